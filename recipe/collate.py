"""DetectionCollator: normalise and pad a batch of uint8 images once, with the pixel mask."""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from .color import JITTER_FIELDS, jitter_
from .timing import stage


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
    and 8x fewer bytes through worker queues and to the GPU, and `normalise_batch` (the Trainer's
    `_prepare_inputs`) normalises it where the model runs, with the same float32 values as above.

    Colour jitter: features may carry `color_jitter` (an image's factors, `color.color_jitter`, or None). A
    uint8 batch then carries `color_jitter` [B, 8] (NaN rows: not jittered) for `normalise_batch`; a batch
    normalised here is jittered here, before normalisation.

    `boxes_on_canvas` (models that never read the pixel mask, `families.ignores_pixel_mask`): such a model
    sees the padded canvas as the image, so its boxes are normalised to the canvas. The labels' boxes are then
    re-normalised to the canvas, and each label gets `frame_size` (the canvas's size in original-image pixels,
    `canvas_frame_size`), which post-processing uses in place of `orig_size`. Without it the padding of a
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
        arena = _Arena.for_layout(layout, ships, reuse=ships and self.reuse_worker_buffers)
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
                for c, plane in enumerate(_planes(image)):
                    values[i, c, :h, :w] = plane
                values[i, :, h:, :], values[i, :, :h, w:] = 0, 0
            elif image.dtype == torch.uint8:
                _normalise_image(values[i], _planes_of(image, jitter, i), mean, std, factor)
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


def _stack_rows(rows: list, width: int, dtype: torch.dtype, missing, arena: _Arena) -> torch.Tensor | None:
    """[B, width] of the features' per-image rows (`missing` where an image has none), or None if none has."""
    if all(row is None for row in rows):
        return None
    out = arena.empty((len(rows), width), dtype)
    for target, row in zip(out, rows):
        target.copy_(torch.as_tensor(row, dtype=dtype) if row is not None else torch.tensor(missing, dtype=dtype))
    return out


def _jittered(jitter: torch.Tensor | None, i: int) -> bool:
    return jitter is not None and not bool(torch.isnan(jitter[i, 0]))


def _planes_of(image: torch.Tensor, jitter: torch.Tensor | None, i: int) -> list[np.ndarray]:
    """The planes to normalise: the uint8 image's, or, when it is jittered, float32 planes in 0..255."""
    if not _jittered(jitter, i):
        return _planes(image)
    jittered = image[None].to(torch.float32)  # a new tensor: jittered in place
    jitter_(jittered, jitter[i:i + 1], bound=255.0)
    return list(jittered[0].numpy())


class _Arena:
    """Tensors laid one after another (8-byte aligned) in one storage: in a DataLoader worker a shared-memory
    segment, so the batch crosses to the main process as one segment and one file descriptor, not one per
    tensor. Without a storage (not in a worker), `empty` is torch.empty."""

    def __init__(self, storage: torch.UntypedStorage | None = None, lease: _Lease | None = None):
        self.storage, self.offset, self._lease = storage, 0, lease

    @staticmethod
    def nbytes(layout: list[tuple[tuple[int, ...], torch.dtype]]) -> int:
        return sum(_aligned(int(np.prod(shape)) * dtype.itemsize) for shape, dtype in layout)

    @classmethod
    def for_layout(cls, layout: list, shared: bool, reuse: bool = False) -> _Arena:
        """Room for `layout` ([(shape, dtype)]): heap tensors, a fresh shared segment, or with `reuse` a free
        buffer of this worker's `_SharedSlots` (a fresh segment if none is free)."""
        nbytes = cls.nbytes(layout)
        if not shared or not nbytes:
            return cls()
        if reuse:
            taken = _worker_slots().take(nbytes)
            if taken is not None:
                return cls(*taken)
        return cls(torch.UntypedStorage._new_shared(nbytes))

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if self.storage is None:
            return torch.empty(shape, dtype=dtype)
        itemsize, start = dtype.itemsize, _aligned(self.offset)
        self.offset = start + int(np.prod(shape)) * itemsize
        if self.offset > self.storage.nbytes():
            raise ValueError(f"_Arena: {self.offset} bytes asked of a {self.storage.nbytes()}-byte storage")
        return torch.empty(0, dtype=dtype).set_(self.storage, start // itemsize, shape)

    def lease(self, batch: dict) -> dict:
        """The batch to return: leased to the main process if it lies on a reused buffer."""
        return batch if self._lease is None else self._lease.lease(batch)


def _aligned(offset: int) -> int:
    return -(-offset // 8) * 8


class _SharedSlots:
    """A DataLoader worker's reusable shared-memory buffers for the batches it sends (pixels, mask, geometry and
    jitter rows; not the labels, which a metric may keep).

    A fresh shared-memory segment costs its page faults on both sides (about 0.7 ms per MB on this machine's VM:
    5 ms for a 7.4 MB batch of 640x480 images, against 0.1 ms in heap memory), and torch's transport of a worker's
    batch gives every batch a fresh one. Here a worker keeps up to `size` buffers and writes each batch into a
    free one. A buffer is leased while the main process holds any tensor on it: the batch is unpickled there by
    `_received`, which sets a finaliser on the buffer's storage (torch keeps a storage's Python object alive as
    long as any tensor or view uses it), and the finaliser clears the lease in `flags`, a small shared tensor both
    processes see. With no free buffer (the main process holds them all, e.g. `list(loader)`) the batch gets a
    fresh segment, as torch would give it: never a wait, never a buffer overwritten while in use."""

    def __init__(self, size: int = 4):
        self.flags = torch.zeros(size, dtype=torch.uint8).share_memory_()  # 1: leased to the main process
        self.buffers: list[torch.UntypedStorage | None] = [None] * size

    def take(self, nbytes: int) -> tuple[torch.UntypedStorage, _Lease] | None:
        """A free buffer of at least `nbytes` (a free one grown if none is large enough), or None."""
        free = [k for k in range(len(self.buffers)) if not self.flags[k]]
        if not free:
            return None
        fits = [k for k in free if self.buffers[k] is not None and self.buffers[k].nbytes() >= nbytes]
        k = fits[0] if fits else free[0]
        if not fits:  # a new buffer as large as the largest so far: sizes settle after the largest batch
            self.buffers[k] = torch.UntypedStorage._new_shared(
                max([nbytes] + [b.nbytes() for b in self.buffers if b is not None]))
        return self.buffers[k], _Lease(self.flags, k)


@dataclass
class _Lease:
    flags: torch.Tensor
    index: int

    def lease(self, batch: dict) -> _LeasedBatch:
        self.flags[self.index] = 1  # in use until the main process lets go of the batch's buffer
        return _LeasedBatch(batch, self)


class _LeasedBatch(dict):
    """A worker's batch on a `_SharedSlots` buffer: unpickled in the main process as a plain dict by `_received`."""

    def __init__(self, batch: dict, lease: _Lease):
        super().__init__(batch)
        self.lease = lease

    def __reduce__(self):
        return _received, (dict(self), self.lease.flags, self.lease.index)


def _received(batch: dict, flags: torch.Tensor, index: int) -> dict:
    """Main process: the batch as a plain dict; its buffer's lease ends when the last tensor on it is freed."""
    weakref.finalize(batch["pixel_values"].untyped_storage(), _release, flags, index)
    return batch


def _release(flags: torch.Tensor, index: int) -> None:
    flags[index] = 0


_SLOTS: tuple[int, _SharedSlots] | None = None


def _worker_slots() -> _SharedSlots:
    """This process's `_SharedSlots` (made on first use; a process forked from one that had them makes its own)."""
    global _SLOTS
    if _SLOTS is None or _SLOTS[0] != os.getpid():
        _SLOTS = (os.getpid(), _SharedSlots())
    return _SLOTS[1]


def pack_labels(labels: list[dict]) -> list[dict]:
    """The same labels with each tensor field (boxes, class_labels, sizes, ...) of all images made views of one
    tensor per field, all in one shared-memory segment (an `_Arena`, apart from the pixels': a metric may keep the
    labels). A worker sends each tensor storage to the main process separately (a file descriptor and a
    shared-memory segment each). One storage per field instead of one per field per image made a 2-worker loader
    1.34x faster here (263 -> 352 images/s on BCCD, side by side); one segment for all fields took it from 955
    to 1,101 images/s (consecutive runs, with `_SharedSlots`). Fields missing from an image, or of differing
    dtypes or trailing shapes, are left as they are."""
    if not labels:
        return labels
    fields = []  # (key, parts, flat shape, dtype)
    for key, first in labels[0].items():
        parts = [label.get(key) for label in labels]
        if all(isinstance(p, torch.Tensor) and p.dtype == first.dtype and p.shape[1:] == first.shape[1:]
               and p.dim() > 0 for p in parts):
            fields.append((key, parts, (sum(p.shape[0] for p in parts), *first.shape[1:]), first.dtype))
    arena = _Arena.for_layout([(shape, dtype) for _, _, shape, dtype in fields], shared=True)
    out = [dict(label) for label in labels]
    for key, parts, shape, dtype in fields:
        flat = arena.empty(shape, dtype)
        torch.cat(parts, out=flat)
        for label, view in zip(out, flat.split([p.shape[0] for p in parts])):
            label[key] = view
    return out


def processor_normalisation(p) -> tuple[np.ndarray | None, np.ndarray | None, float | None]:
    """(mean, std) in 0..255 units, or only a rescale factor, read from the processor at each call (it may be
    changed after the collator is built). Fused as transformers' TorchvisionBackend
    `_fuse_mean_std_and_rescale_factor` does: mean and std divided by the rescale factor, in float32."""
    do_rescale, do_normalize = getattr(p, "do_rescale", True), getattr(p, "do_normalize", True)
    rescale_factor = getattr(p, "rescale_factor", 1 / 255)
    if not do_normalize:
        return None, None, (rescale_factor if do_rescale else None)
    mean = torch.tensor(p.image_mean, dtype=torch.float32)
    std = torch.tensor(p.image_std, dtype=torch.float32)
    if do_rescale:
        mean, std = mean * (1.0 / rescale_factor), std * (1.0 / rescale_factor)
    return mean.numpy(), std.numpy(), None


def normalise_batch(batch: dict, image_processor) -> dict:
    """A `normalise_on_device` batch (uint8 pixel_values, uint8 mask, optional `geometry` and `color_jitter`) ->
    float32 pixel_values flipped and resized (`apply_geometry`), jittered and normalised as `DetectionCollator`
    does on the CPU (same float32 operations, so the same values; padding 0) and an int64 mask, on the batch's
    device; `geometry` and `color_jitter` are consumed. Any other batch is returned as it is."""
    pixel_values = batch.get("pixel_values")
    if pixel_values is None or pixel_values.dtype != torch.uint8:
        return batch
    with stage("normalise"):
        mean, std, factor = processor_normalisation(image_processor)
        jitter, geometry = batch.get("color_jitter"), batch.get("geometry")
        out = {key: value for key, value in batch.items() if key not in ("color_jitter", "geometry")}
        if geometry is not None:
            values = apply_geometry(pixel_values, geometry, tuple(batch["pixel_mask"].shape[-2:]))
            normalised = _normalise_with_torch(values, batch["pixel_mask"], mean, std, factor, jitter)
        else:
            # on the CPU, the collator's numpy path (one thread per plane op: 2x faster than torch here)
            normalise = _normalise_on_cpu if pixel_values.device.type == "cpu" else _normalise_with_torch
            normalised = normalise(pixel_values, batch["pixel_mask"], mean, std, factor, jitter)
        return {**out, "pixel_values": normalised, "pixel_mask": batch["pixel_mask"].to(torch.int64)}


def apply_geometry(pixel_values: torch.Tensor, geometry: torch.Tensor, canvas_hw: tuple[int, int]) -> torch.Tensor:
    """uint8 [B, 3, h, w] decoded images (top left) and `geometry` [B, 5] (flip, decoded h, w, output h, w) ->
    float32 [B, 3, *canvas_hw] in 0..255: each image flipped if asked, resized bilinearly (half-pixel centres,
    no antialiasing: the arithmetic of cv2.resize INTER_LINEAR, in float instead of 11-bit fixed point and
    without rounding to uint8), at the top left, zeros elsewhere."""
    out = torch.zeros((len(pixel_values), 3, *canvas_hw), dtype=torch.float32, device=pixel_values.device)
    for i, (flip, src_h, src_w, h, w) in enumerate(geometry.cpu().tolist()):
        image = pixel_values[i, :, :src_h, :src_w].to(torch.float32)
        if flip:
            image = image.flip(-1)
        if (h, w) != (src_h, src_w):
            image = torch.nn.functional.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        out[i, :, :h, :w] = image
    return out


def _normalise_with_torch(pixel_values: torch.Tensor, pixel_mask: torch.Tensor, mean, std, factor,
                          jitter: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (or float32 0..255) pixel values -> jittered, normalised float32 with zero padding, in torch."""
    values = pixel_values.to(torch.float32)
    if jitter is not None:  # the jittered images only (in 0..255): the others keep the collator's exact values
        jitter_(values, jitter, pixel_mask, bound=255.0)
    if mean is not None:
        mean, std = (torch.from_numpy(v).to(values.device)[:, None, None] for v in (mean, std))
        values = (values - mean) / std
    elif factor is not None:
        values = values * torch.tensor(factor, dtype=torch.float32, device=values.device)
    return torch.where(pixel_mask[:, None].bool(), values, torch.zeros((), dtype=values.dtype, device=values.device))


def _normalise_on_cpu(pixel_values: torch.Tensor, pixel_mask: torch.Tensor, mean, std, factor,
                      jitter: torch.Tensor | None = None) -> torch.Tensor:
    out = torch.empty(pixel_values.shape, dtype=torch.float32)
    values, mask = out.numpy(), pixel_mask.numpy()
    for i in range(len(values)):
        h, w = int(mask[i, :, 0].sum()), int(mask[i, 0, :].sum())  # the mask is the top-left h x w rectangle
        image = pixel_values[i, :, :h, :w]
        _normalise_image(values[i], _planes_of(image, jitter, i), mean, std, factor)
    return out


def _normalise_image(out: np.ndarray, planes: list[np.ndarray], mean, std, factor) -> None:
    """out [3, H, W] = the normalised planes (h x w each) at the top left, zero padding elsewhere."""
    h, w = planes[0].shape
    for c, plane in enumerate(planes):
        _normalise_plane(out[c, :h, :w], plane, mean, std, factor, c)
    out[:, h:, :], out[:, :h, w:] = 0.0, 0.0


def canvas_frame_size(orig_hw: torch.Tensor, size_hw: torch.Tensor, canvas_hw: tuple[int, int]) -> torch.Tensor:
    """The padded canvas's (height, width) in original-image pixels, float32 ([2] or [B, 2]): an image of
    `orig_hw` pixels resized to `size_hw` and padded to `canvas_hw`; `cxcywh_norm` boxes of the canvas times
    this are `xywh_abs` in the original image."""
    canvas = torch.tensor(canvas_hw, dtype=torch.float64)
    return (orig_hw.to(torch.float64) * canvas / size_hw.to(torch.float64)).to(torch.float32)


def labels_on_canvas(labels: dict, size_hw: tuple[int, int], canvas_hw: tuple[int, int]) -> dict:
    """A copy of one image's labels with `boxes` (`cxcywh_norm` of the `size_hw` image), if any, normalised to
    the padded `canvas_hw` instead, and `frame_size` (see `canvas_frame_size`) where `orig_size` is given."""
    out = dict(labels)
    if "boxes" in labels:
        (h, w), (canvas_h, canvas_w) = size_hw, canvas_hw
        out["boxes"] = labels["boxes"] * torch.tensor([w / canvas_w, h / canvas_h, w / canvas_w, h / canvas_h])
    if "orig_size" in labels:
        out["frame_size"] = canvas_frame_size(labels["orig_size"], torch.tensor(size_hw), canvas_hw)
    return out


def frame_sizes(labels: list[dict]) -> torch.Tensor:
    """[B, 2] float32: each image's box frame in original pixels, the padded canvas (`frame_size`, from
    `boxes_on_canvas`) or the image itself (`orig_size`); what `postprocess_detections` scales boxes by."""
    return torch.stack([label.get("frame_size", label["orig_size"]).float() for label in labels])


def _planes(image: torch.Tensor) -> list[np.ndarray]:
    """The 3 planes of a uint8 [3, H, W] image. The transform's images are channel-last arrays seen as [3, H, W];
    reading that layout strided is ~2.5x slower than splitting it into planes first."""
    if image.stride(0) == 1:
        return cv2.split(image.permute(1, 2, 0).numpy())
    return list(image.numpy())


def _normalise_plane(out: np.ndarray, plane: np.ndarray, mean, std, factor, c: int) -> None:
    """out = (float32(plane) - mean[c]) / std[c], or float32(plane) x factor, or float32(plane): the float32
    operations of the processor's torchvision backend (IEEE subtraction, division and product, so the same
    values), converting and subtracting in one pass."""
    if mean is not None:
        np.subtract(plane, mean[c], out=out, dtype=np.float32)
        np.divide(out, std[c], out=out)
    elif factor is not None:
        np.multiply(plane, np.float32(factor), out=out, dtype=np.float32)
    else:
        out[...] = plane
