"""Table rows -> uint8 `pixel_values` and model labels, through the augmentation of `augment.py`.

Training draws each image's flip, size and colour-jitter factors here and leaves the pixels to the batch
(`make_transform(batch_geometry=True)`, `normalise.normalise_batch`); evaluation resizes here (cv2). Padding happens
once per batch in `collate.DetectionCollator`, normalisation where the model runs.

Labels that reach the model (one dict per image):
  class_labels [N] int64 contiguous 0..C-1 (crowd boxes removed), boxes [N, 4] float32 `cxcywh_norm`
  clamped to [0, 1] with w, h > 0, image_id [1] int64, orig_size [2] (h, w of the file's image),
  size [2] (h, w after augmentation, before padding).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from recipe.core.boxes import xywh_abs_to_cxcywh_norm, xywh_abs_to_xyxy_abs
from recipe.core.stage_timer import StageTimer, active
from recipe.data.images import read_image, read_image_chw
from recipe.pipeline.augment import DetectionAugmentation, reseed


def make_labels(bboxes_xywh_abs: np.ndarray, category: Sequence[int], iscrowd: Sequence[int], image_id: int,
                orig_hw: tuple[int, int], size_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Model labels for one image; crowd boxes and boxes that end up with w or h <= 0 are left out."""
    boxes = xywh_abs_to_cxcywh_norm(np.asarray(bboxes_xywh_abs, dtype=np.float64).reshape(-1, 4),
                                    width=size_hw[1], height=size_hw[0])
    keep = (np.asarray(iscrowd, dtype=np.int64).reshape(-1) == 0) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    return {
        "class_labels": torch.as_tensor(np.asarray(category, dtype=np.int64).reshape(-1)[keep]),
        "boxes": torch.as_tensor(boxes[keep], dtype=torch.float32).reshape(-1, 4),
        "image_id": torch.tensor([image_id], dtype=torch.int64),
        "orig_size": torch.tensor(orig_hw, dtype=torch.int64),
        "size": torch.tensor(size_hw, dtype=torch.int64),
    }


_warned_sizes: set = set()


def _warn_size_once(path: str, actual_hw, annotated_hw) -> None:
    if not _warned_sizes:
        import warnings

        warnings.warn(f"{path}: image is {actual_hw[1]}x{actual_hw[0]} but the annotation file says "
                      f"{annotated_hw[1]}x{annotated_hw[0]}; resizing to the annotated size (shown once)",
                      stacklevel=2)
    _warned_sizes.add(path)


class AugmentationSeeds:
    """Each training image's augmentation stream, fixed by (seed, epoch, image_id) alone.

    So `--seed` repeats a run whatever the number of dataloader workers and whenever a batch is fetched; each
    image gets its own stream in each epoch (workers never share one); and a run resumed from a checkpoint
    augments exactly as the uninterrupted run did. Reseeding from torch's generator per batch (the recipe's
    earlier way) tied the augmentation to the moment a batch was fetched: the dataloader fetches ahead, and the
    Trainer restores the checkpoint's RNG state only after the resumed run fetched its first batches, so a run
    resumed mid-epoch augmented them differently and its losses drifted from the next step on.

    `set_epoch` is called as each epoch starts (`engine.callbacks.AugmentationEpochCallback`). The epoch lives in shared
    memory, so persistent dataloader workers (forked once) see it change."""

    def __init__(self, seed: int):
        self.seed = seed % 2**64  # SeedSequence takes non-negative entropy
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def for_image(self, image_id: int) -> np.random.SeedSequence:
        return np.random.SeedSequence([self.seed, self.epoch, int(image_id) % 2**64])


class ImagePool:
    """The training images for augmentations that mix several (Mosaic, MixUp: `presets.PresetAugmentation`):
    `load(index)` reads row `index` of `table` (a datasets.Dataset of the table's columns, without a transform) as an
    `original_ops.Sample` at its annotated size, boxes `xyxy_abs`. Picklable (the table is), so loader workers started
    with spawn receive it."""

    def __init__(self, table):
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def load(self, index: int):
        from recipe.pipeline.original_ops import Sample

        row = self.table[int(index)]
        return Sample(_read_at_annotated_size(row["image_path"], row["height"], row["width"]),
                      xywh_abs_to_xyxy_abs(row["objects"]["bbox"]), row["objects"]["category"],
                      row["objects"]["iscrowd"])


def make_transform(augmentation: DetectionAugmentation, *, seeds: AugmentationSeeds | None = None,
                   stage_timer: StageTimer | None = None, batch_geometry: bool = False,
                   plain: DetectionAugmentation | None = None, plain_from_epoch: int | None = None
                   ) -> DetectionTransform:
    """A `Dataset.with_transform` callable (see `DetectionTransform`)."""
    return DetectionTransform(augmentation, seeds=seeds, stage_timer=stage_timer, batch_geometry=batch_geometry,
                              plain=plain, plain_from_epoch=plain_from_epoch)


class DetectionTransform:
    """A `Dataset.with_transform` callable: table rows -> {"pixel_values": [uint8 [3, H, W]], "labels": [...]}
    and, when any image of the rows is colour-jittered, "color_jitter": [float32 [8] or None] (its factors).

    A module-level class, not a closure: DataLoader workers started with `spawn` / `forkserver` (macOS, Python
    3.14) receive it pickled.

    Images stay uint8 here; `DetectionCollator` pads them once per batch, and the batch is normalised and
    jittered where the model runs (`normalise.normalise_batch`).
    `batch_geometry` (training; used when the augmentation `defers_pixels`): the image is left as decoded, and
    its flip and resize are applied to the batch where the model runs too (`normalise.apply_geometry`): rows
    get "geometry": int64 [5] (flip, decoded h, w, output h, w); labels are those of the output image.
    `seeds` (training): before each image the augmentation is reseeded from `seeds.for_image(image_id)`, so
    the same image in the same epoch is augmented the same way in every run (see `AugmentationSeeds`).
    Without it the augmentation keeps its own state (eval: nothing random; tests: `build_augmentation(seed=)`).
    `plain`, `plain_from_epoch` (training's final phase, `no_aug_epochs`): from that epoch on (`seeds.epoch`,
    which a resumed run restores) images go through `plain`, the evaluation resize, instead.
    """

    def __init__(self, augmentation: DetectionAugmentation, *, seeds: AugmentationSeeds | None = None,
                 stage_timer: StageTimer | None = None, batch_geometry: bool = False,
                 plain: DetectionAugmentation | None = None, plain_from_epoch: int | None = None):
        if plain is not None and (seeds is None or plain_from_epoch is None):
            raise ValueError("a plain final phase needs the epoch: give seeds and plain_from_epoch")
        self.augmentation, self.seeds, self.stage_timer = augmentation, seeds, stage_timer
        self.batch_geometry, self.plain, self.plain_from_epoch = batch_geometry, plain, plain_from_epoch

    def augmentation_now(self) -> DetectionAugmentation:
        if self.plain is not None and self.seeds.epoch >= self.plain_from_epoch:
            return self.plain
        return self.augmentation

    def __call__(self, batch: dict) -> dict:
        augmentation, seeds = self.augmentation_now(), self.seeds
        deferred = self.batch_geometry and augmentation.defers_pixels
        timer = self.stage_timer if self.stage_timer is not None else active()  # a benchmark's record(), if any
        pixel_values, labels, jitter, geometry = [], [], [], []
        for image_id, path, height, width, objects in zip(batch["image_id"], batch["image_path"], batch["height"],
                                                          batch["width"], batch["objects"]):
            if seeds is not None:
                reseed(augmentation, seeds.for_image(image_id))
            start = time.perf_counter()
            image, out, size, decoded = _augment_one(augmentation, deferred, path, height, width, objects)
            pixel_values.append(image)
            if deferred:
                geometry.append(torch.tensor([int(out["hflip"]), height, width, *size], dtype=torch.int64))
            augmented = time.perf_counter()
            labels.append(make_labels(out["bboxes"], out["category"], out["iscrowd"], image_id, (height, width),
                                      size))
            factors = out.get("color_jitter")
            jitter.append(None if factors is None else torch.from_numpy(factors))
            if timer is not None:
                timer.add("decode", decoded - start)
                timer.add("augment", augmented - decoded)
                timer.add("labels", time.perf_counter() - augmented)
                timer.images += 1
        result = {"pixel_values": pixel_values, "labels": labels}
        if any(j is not None for j in jitter):
            result["color_jitter"] = jitter
        if deferred:
            result["geometry"] = geometry
        return result


def _augment_one(augmentation: DetectionAugmentation, deferred: bool, path: str, height: int, width: int,
                 objects: dict) -> tuple[torch.Tensor, dict, tuple[int, int], float]:
    """One image -> (uint8 [3, H, W], the augmentation's output, the output size, the time decoding ended).
    `deferred`: the image as decoded and the augmentation's `plan` (flip and resize left to the batch)."""
    boxes = np.asarray(objects["bbox"], dtype=np.float64).reshape(-1, 4)
    category, iscrowd = list(objects["category"]), list(objects["iscrowd"])
    if deferred:
        image = _read_chw_at_annotated_size(path, height, width)
        decoded = time.perf_counter()
        out = augmentation.plan(height, width, boxes, category, iscrowd)
        return image, out, out["size"], decoded
    array = _read_at_annotated_size(path, height, width)
    decoded = time.perf_counter()
    out = augmentation(image=array, bboxes=boxes, category=category, iscrowd=iscrowd)
    # a view of the channel-last array: the collator copies it once
    return torch.from_numpy(out["image"]).permute(2, 0, 1), out, out["image"].shape[:2], decoded


def _read_chw_at_annotated_size(path: str, height: int, width: int) -> torch.Tensor:
    image = read_image_chw(path)
    if image.shape[1:] == (height, width):
        return image
    resized = _at_annotated_size(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), path, height, width)
    return torch.from_numpy(resized).permute(2, 0, 1).contiguous()


def _read_at_annotated_size(path: str, height: int, width: int) -> np.ndarray:
    return _at_annotated_size(read_image(path), path, height, width)


def _at_annotated_size(image: np.ndarray, path: str, height: int, width: int) -> np.ndarray:
    if image.shape[:2] != (height, width):
        # Annotated size wins: boxes and evaluation are in its pixels. Warn, don't crash mid-epoch.
        _warn_size_once(path, image.shape[:2], (height, width))
        image = np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))  # writable, for torch
    return image
