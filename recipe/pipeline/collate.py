"""DetectionCollator: normalise and pad a batch of uint8 images once, with the pixel mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from recipe.core.boxes import labels_on_canvas
from recipe.core.stage_timer import stage
from recipe.pipeline.color_jitter import JITTER_FIELDS
from recipe.pipeline.device_batch import (
    image_planes,
    normalise_batch,
    normalise_image,
    planes_to_normalise,
    processor_normalisation,
)
from recipe.pipeline.worker_transport import BatchArena, pack_labels


@dataclass
class DetectionCollator:
    """features: [{"pixel_values": [3, H_i, W_i], "labels": dict}] ->
    {"pixel_values": [B, 3, H, W] float32, "pixel_mask": [B, H, W] int64 (1 = real pixel), "labels": list[dict]}.

    uint8 images are rescaled and normalised as the image processor says (its `do_rescale`, `rescale_factor`,
    `do_normalize`, `image_mean`, `image_std`: DETR normalises with ImageNet statistics, RT-DETR only
    rescales), with the same float32 arithmetic as its torchvision backend, so the values equal the processor's
    output. Floating-point images are taken as already processed. Padding is bottom-right with zeros after
    normalisation (as the processor's `pad`), to the batch's largest height and width, or to `pad_size` where
    that is larger (as the processor with `do_pad` and `pad_size`, which refuses an image larger than it), then up
    to a multiple of `pad_to_multiple_of`.

    `normalise_on_device` (training and evaluation): the batch stays uint8 (zero padding) with a uint8 mask, 4x
    and 8x fewer bytes through worker queues and to the GPU, and `normalise.normalise_batch` (the Trainer's
    `_prepare_inputs`) normalises it where the model runs, with the same float32 values as above.

    Colour jitter: features may carry `color_jitter` (an image's factors, `color.color_jitter`, or None). A
    uint8 batch then carries `color_jitter` [B, 8] (NaN rows: not jittered) for `normalise_batch`; a batch
    normalised here is jittered here, before normalisation.

    `boxes_on_canvas` (models that never read the pixel mask, `families.ignores_pixel_mask`): such a model
    sees the padded canvas as the image, so its boxes are normalised to the canvas. The labels' boxes are then
    re-normalised to the canvas, and each label gets `frame_size` (the canvas's size in original-image pixels,
    `boxes.canvas_frame_size`), which post-processing uses in place of `orig_size`. Without it the padding of a
    multi-scale batch (or to a multiple of 32) would shift every target box the model is trained on.
    """

    image_processor: Any
    pad_to_multiple_of: int = 1  # windowed ViT backbones need sizes in multiples of patch x windows
    # evaluate.py / predict.py: the smallest canvas (h, w), the image processor's (`processor_size.canvas_of`)
    pad_size: tuple[int, int] | None = None
    boxes_on_canvas: bool = False
    normalise_on_device: bool = False
    # in a DataLoader worker, write batches into the worker's reused shared buffers (`_SharedSlots`); False:
    # a fresh shared segment per batch, as torch's own transport (benchmarks/dataloader.py compares the two)
    reuse_worker_buffers: bool = True

    def __call__(self, features: list[dict]) -> dict:
        with stage("collate"):
            return self._collate(features)

    def _collate(self, features: list[dict]) -> dict:
        images = [f["pixel_values"] for f in features]
        # In a DataLoader worker the batch is written straight into shared memory: torch would otherwise copy
        # it there to send it to the main process (as its default_collate avoids too).
        shared = torch.utils.data.get_worker_info() is not None
        geometry_rows = [f.get("geometry") for f in features]
        jitter_rows = [f.get("color_jitter") for f in features]
        deferred = any(g is not None for g in geometry_rows)  # flip and resize left to the batch (`geometry`)
        # each image's size in the batch: after the batch's flip and resize when it carries `geometry`
        sizes = [tuple(image.shape[-2:]) if g is None else (int(g[3]), int(g[4]))
                 for image, g in zip(images, geometry_rows)]
        m, (min_h, min_w) = self.pad_to_multiple_of, self.pad_size or (0, 0)
        height = -(-max(min_h, *(h for h, _ in sizes)) // m) * m
        width = -(-max(min_w, *(w for _, w in sizes)) // m) * m
        uint8 = (self.normalise_on_device or deferred) and all(i.dtype == torch.uint8 for i in images)
        # the images as they are (decoded, before the flip and resize, with `geometry`)
        source_hw = (height, width) if not deferred else (max(i.shape[-2] for i in images),
                                                         max(i.shape[-1] for i in images))
        layout = _batch_layout(len(images), source_hw, (height, width), uint8, deferred,
                               any(j is not None for j in jitter_rows))
        # In a worker, a batch shipped as it is (not normalised here after the geometry) lies in one shared
        # buffer, one of the worker's reused ones when one is free (`_SharedSlots`).
        ships = shared and (self.normalise_on_device or not deferred)
        arena = BatchArena.for_layout(layout, ships, reuse=ships and self.reuse_worker_buffers)
        # empty, not zeros: each element is written once below, as image or as padding
        pixel_values, pixel_mask = (arena.empty(*spec) for spec in layout[:2])
        geometry = _stack_rows(geometry_rows, 5, torch.int64, 0, arena)
        jitter = _stack_rows(jitter_rows, JITTER_FIELDS, torch.float32, float("nan"), arena)
        self._write_images(pixel_values, pixel_mask, images, sizes, uint8, jitter)
        labels = [f["labels"] for f in features]
        if self.boxes_on_canvas:
            labels = [labels_on_canvas(label, size, (height, width)) for label, size in zip(labels, sizes)]
        if shared:
            labels = pack_labels(labels)
        batch = {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": labels}
        if uint8 and jitter is not None:
            batch["color_jitter"] = jitter
        if geometry is not None:
            batch["geometry"] = geometry
            if not self.normalise_on_device:  # this collator normalises: the batch's geometry is applied here
                batch = normalise_batch(batch, self.image_processor)
        return arena.lease(batch)

    def _write_images(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor, images: list[torch.Tensor],
                      sizes: list[tuple[int, int]], uint8: bool, jitter: torch.Tensor | None) -> None:
        """Every element of `pixel_values` and `pixel_mask` written once: image (as it is, or normalised) or 0."""
        # Written through numpy: one thread per plane op. torch would split each op over its intra-op threads,
        # and with other processes on the cores a waiting thread made the batch 10x slower (README "Results").
        values, mask = pixel_values.numpy(), pixel_mask.numpy()
        mean, std, factor = (None, None, None) if uint8 else self._normalisation()
        for i, (image, (mh, mw)) in enumerate(zip(images, sizes)):
            h, w = image.shape[-2:]
            if uint8:
                for c, plane in enumerate(image_planes(image)):
                    values[i, c, :h, :w] = plane
                values[i, :, h:, :], values[i, :, :h, w:] = 0, 0
            elif image.dtype == torch.uint8:
                normalise_image(values[i], planes_to_normalise(image, jitter, i), mean, std, factor)
            else:  # already processed
                values[i, :, :h, :w] = image.numpy()
                values[i, :, h:, :], values[i, :, :h, w:] = 0.0, 0.0
            mask[i, :mh, :mw], mask[i, mh:, :], mask[i, :mh, mw:] = 1, 0, 0

    def _normalisation(self) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
        return processor_normalisation(self.image_processor)


def _batch_layout(n: int, source_hw: tuple[int, int], canvas_hw: tuple[int, int], uint8: bool, deferred: bool,
                  jittered: bool) -> list[tuple[tuple[int, ...], torch.dtype]]:
    """(shape, dtype) of pixel_values, pixel_mask and, if present, the geometry and jitter rows of a batch."""
    layout = [((n, 3, *source_hw), torch.uint8 if uint8 else torch.float32),
              ((n, *canvas_hw), torch.uint8 if uint8 else torch.int64)]
    if deferred:
        layout.append(((n, 5), torch.int64))
    if jittered:
        layout.append(((n, JITTER_FIELDS), torch.float32))
    return layout


def _stack_rows(rows: list, width: int, dtype: torch.dtype, missing, arena: BatchArena) -> torch.Tensor | None:
    """[B, width] of the features' per-image rows (`missing` where an image has none), or None if none has."""
    if all(row is None for row in rows):
        return None
    out = arena.empty((len(rows), width), dtype)
    for target, row in zip(out, rows):
        target.copy_(torch.as_tensor(row, dtype=dtype) if row is not None else torch.tensor(missing, dtype=dtype))
    return out
