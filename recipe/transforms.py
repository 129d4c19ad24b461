"""Augmentation (albumentations, bbox-safe) on uint8 images -> uint8 `pixel_values` and model labels.

Normalisation and padding happen once per batch in `collate.DetectionCollator`.

Labels that reach the model (one dict per image):
  class_labels [N] int64 contiguous 0..C-1 (crowd boxes removed), boxes [N, 4] float32 `cxcywh_norm`
  clamped to [0, 1] with w, h > 0, image_id [1] int64, orig_size [2] (h, w of the file's image),
  size [2] (h, w after augmentation, before padding).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import numpy as np
import torch
from PIL import Image

from .boxes import xywh_abs_to_cxcywh_norm
from .data.images import read_image
from .timing import StageTimer, active


class MultiScaleResize(A.SmallestMaxSize):
    """DETR-style resize: shortest edge drawn from `max_size`, then capped so the longest edge is at most
    `longest_edge` (torchvision/DETR `RandomResize([...], max_size=...)`). Boxes are scale-invariant here
    (albumentations keeps them normalized internally)."""

    def __init__(self, max_size: int | Sequence[int], longest_edge: int, p: float = 1.0):
        super().__init__(max_size=list(max_size) if not isinstance(max_size, int) else max_size, p=p)
        self.longest_edge = longest_edge

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        scale = super().get_params_dependent_on_data(params, data)["scale"]
        img_h, img_w = params["shape"][:2]
        if max(img_h, img_w) * scale > self.longest_edge:
            scale = self.longest_edge / max(img_h, img_w)
        return {"scale": scale}


class RandomSquareResize(A.Resize):
    """RT-DETR-style resize: to a square side x side drawn from `sides` (aspect ratio not kept; the original
    RT-DETR / D-FINE / DEIMv2 pipelines resize to 640x640 and train on sides 480-800). Boxes are normalised
    internally, so they follow the image."""

    def __init__(self, sides: int | Sequence[int], p: float = 1.0):
        self.sides = [sides] if isinstance(sides, int) else list(sides)
        super().__init__(height=self.sides[0], width=self.sides[0], p=p)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {"side": self.py_random.choice(self.sides)}

    def apply(self, img: np.ndarray, side: int = 0, **params: Any) -> np.ndarray:
        return fgeometric.resize(img, (side, side), interpolation=self.interpolation)


RESIZES = ("shortest_edge", "square")  # DataArguments.resize


def _bbox_params() -> A.BboxParams:
    """Boxes `xywh_abs` (COCO) with their labels; clipped to the image, degenerate ones dropped."""
    return A.BboxParams(format="coco", label_fields=["category", "iscrowd"], clip=True,
                        filter_invalid_bboxes=True, min_width=1e-3, min_height=1e-3)


def build_augmentation(train: bool, shortest_edges: Sequence[int], longest_edge: int, eval_size: int,
                       hflip_prob: float = 0.5, crop_prob: float = 0.0, color_jitter_prob: float = 0.5,
                       seed: int | None = None, resize: str = "shortest_edge") -> A.Compose:
    """Train: flip, optional bbox-safe crop, multi-scale resize, mild colour jitter. Eval: fixed resize.

    resize "shortest_edge": the shortest edge drawn from `shortest_edges` (eval: `eval_size`), the longest
    capped at `longest_edge`; "square": side x side with the side drawn from `shortest_edges` (eval:
    `eval_size` x `eval_size`), `longest_edge` unused.
    `seed` fixes the random state (`make_transform(..., seeds=AugmentationSeeds(...))` replaces it per image)."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
    bbox_params = _bbox_params()
    square = resize == "square"
    if not train:
        fixed = RandomSquareResize(eval_size) if square else MultiScaleResize(eval_size, longest_edge)
        return A.Compose([fixed], bbox_params=bbox_params)
    steps = [A.HorizontalFlip(p=hflip_prob)]
    if crop_prob > 0:
        steps.append(A.BBoxSafeRandomCrop(erosion_rate=0.0, p=crop_prob))
    steps.append(RandomSquareResize(shortest_edges) if square else MultiScaleResize(list(shortest_edges), longest_edge))
    if color_jitter_prob > 0:
        steps.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=color_jitter_prob))
    augmentation = A.Compose(steps, bbox_params=bbox_params)
    if seed is not None:
        # Not Compose(seed=...): albumentations 2.0.8 then gives every child transform its own generator with
        # that same seed, so the children's draws are correlated (flip and jitter see the same numbers).
        reseed(augmentation, seed)
    return augmentation


def eval_augmentation_for(size: dict) -> A.Compose:
    """The evaluation resize an image processor's `size` states: {"height", "width"} (a square side: the
    recipe's "square" resize; another fixed size: resized to it) or {"shortest_edge", "longest_edge"}."""
    if size.get("height") and size.get("width") and not size.get("shortest_edge"):
        if size["height"] == size["width"]:
            return build_augmentation(False, [], 0, int(size["height"]), resize="square")
        return A.Compose([A.Resize(size["height"], size["width"])], bbox_params=_bbox_params())
    short = size.get("shortest_edge") or 800
    return build_augmentation(False, [short], size.get("longest_edge") or 1333, short)


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

    `set_epoch` is called as each epoch starts (`trainer.AugmentationEpochCallback`). The epoch lives in shared
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


def make_transform(augmentation: A.Compose, *, seeds: AugmentationSeeds | None = None,
                   stage_timer: StageTimer | None = None) -> Callable[[dict], dict]:
    """A `Dataset.with_transform` function: table rows -> {"pixel_values": [uint8 [3, H, W]], "labels": [...]}.

    Images stay uint8 here; `DetectionCollator` normalises and pads them once per batch.
    `seeds` (training): before each image the augmentation is reseeded from `seeds.for_image(image_id)`, so
    the same image in the same epoch is augmented the same way in every run (see `AugmentationSeeds`).
    Without it the augmentation keeps its own state (eval: nothing random; tests: `build_augmentation(seed=)`).
    """

    def transform(batch: dict) -> dict:
        timer = stage_timer if stage_timer is not None else active()  # a benchmark's record(), if any
        pixel_values, labels = [], []
        for image_id, path, height, width, objects in zip(batch["image_id"], batch["image_path"], batch["height"],
                                                          batch["width"], batch["objects"]):
            if seeds is not None:
                reseed(augmentation, seeds.for_image(image_id))
            start = time.perf_counter()
            image = _read_at_annotated_size(path, height, width)
            decoded = time.perf_counter()
            out = augmentation(image=image, bboxes=np.asarray(objects["bbox"], dtype=np.float64).reshape(-1, 4),
                               category=list(objects["category"]), iscrowd=list(objects["iscrowd"]))
            augmented = time.perf_counter()
            img = out["image"]
            pixel_values.append(torch.from_numpy(img).permute(2, 0, 1))  # a view: the collator copies once
            labels.append(make_labels(out["bboxes"], out["category"], out["iscrowd"], image_id,
                                      (height, width), img.shape[:2]))
            if timer is not None:
                timer.add("decode", decoded - start)
                timer.add("augment", augmented - decoded)
                timer.add("labels", time.perf_counter() - augmented)
                timer.images += 1
        return {"pixel_values": pixel_values, "labels": labels}

    return transform


def reseed(augmentation: A.Compose, seed: int | np.random.SeedSequence) -> None:
    """Give `augmentation` (and every transform in it) a fresh random state drawn from `seed`.

    Cheaper than `Compose.set_random_seed`, which builds a new generator per child transform: children share
    the Compose's generators (albumentations' own `set_random_state` propagation)."""
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    augmentation.set_random_state(np.random.default_rng(sequence),
                                  random.Random(int(sequence.generate_state(1, np.uint64)[0])))


def _read_at_annotated_size(path: str, height: int, width: int) -> np.ndarray:
    image = read_image(path)
    if image.shape[:2] != (height, width):
        # Annotated size wins: boxes and evaluation are in its pixels. Warn, don't crash mid-epoch.
        _warn_size_once(path, image.shape[:2], (height, width))
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    return image
