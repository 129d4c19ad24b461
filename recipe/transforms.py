"""Augmentation (albumentations' semantics, bbox-safe) -> uint8 `pixel_values` and model labels.

Training draws each image's flip, size and colour-jitter factors here and leaves the pixels to the batch
(`make_transform(batch_geometry=True)`, `normalise.normalise_batch`); evaluation resizes here (cv2). Padding happens
once per batch in `collate.DetectionCollator`, normalisation where the model runs.

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
import cv2
import numpy as np
import torch
from PIL import Image

from .boxes import xywh_abs_to_cxcywh_norm
from .data.images import read_image, read_image_chw
from .processor_size import processor_resize
from .timing import StageTimer, active

# OpenCV's own thread pool does not survive fork: a DataLoader worker forked after the parent had used it can
# block forever inside cv2 (seen here: a worker stuck in pthread_cond_destroy under cv2.resize). The loader's
# workers are the parallelism; OpenCV runs each call in the calling thread.
cv2.setNumThreads(0)


class MultiScaleResize(A.SmallestMaxSize):
    """DETR-style resize: shortest edge drawn from `max_size`, then capped so the longest edge is at most
    `longest_edge` (torchvision/DETR `RandomResize([...], max_size=...)`). Boxes are scale-invariant here
    (albumentations keeps them normalized internally)."""

    def __init__(self, max_size: int | Sequence[int], longest_edge: int, p: float = 1.0):
        super().__init__(max_size=list(max_size) if not isinstance(max_size, int) else max_size, p=p)
        self.longest_edge = longest_edge

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        scale = super().get_params_dependent_on_data(params, data)["scale"]  # side / shortest edge (draws the side)
        img_h, img_w = params["shape"][:2]
        return {"scale": _capped_scale(scale, img_h, img_w, self.longest_edge)}


def _capped_scale(scale: float, height: int, width: int, longest_edge: int) -> float:
    """`scale` (the drawn shortest edge / the image's), lowered so the longest edge is at most `longest_edge`."""
    return longest_edge / max(height, width) if max(height, width) * scale > longest_edge else scale


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


class DetectionAugmentation:
    """The recipe's augmentation of one image and its `xywh_abs` boxes: horizontal flip, optional bbox-safe
    crop, resize, and colour-jitter factors (applied later, to the batch: `color.color_jitter`).

    Called like an albumentations Compose: `aug(image=uint8 [H, W, 3], bboxes=xywh_abs [N, 4], category=[N],
    iscrowd=[N])` -> the same keys (boxes clipped to the image, degenerate ones dropped with their labels) plus
    `color_jitter`: float32 [8] factors, or None when the image is not jittered.

    It draws the same random numbers in the same order as the albumentations Compose it replaced
    ([HorizontalFlip, BBoxSafeRandomCrop, MultiScaleResize | RandomSquareResize, ColorJitter]) and, when called,
    flips and resizes with the same cv2 calls, so a seed gives the same flips, sizes, pixels and boxes (tests
    compare the two). Without a crop the geometry is done here directly: albumentations' per-step box
    bookkeeping cost more than the flip and the resize together (about 1.4 ms of 2.3 ms per BCCD image in a
    profile of the Compose). With a crop the geometry goes through albumentations (it draws the crop's
    box-safe window). Training calls `plan` instead and leaves the pixels to the batch."""

    def __init__(self, *, resize: str, sides: int | Sequence[int], longest_edge: int = 0,
                 hflip_prob: float = 0.0, crop_prob: float = 0.0, color_jitter_prob: float = 0.0,
                 resize_to: Callable[[int, int], tuple[int, int]] | None = None):
        self.resize, self.longest_edge, self.resize_to = resize, longest_edge, resize_to
        self.draw_side = not isinstance(sides, int) or resize == "square"  # albumentations' choice() calls
        self.sides = [sides] if isinstance(sides, int) else list(sides)
        self.hflip_prob, self.color_jitter_prob = hflip_prob, color_jitter_prob
        self.jitter_ranges = ((0.8, 1.2), (0.8, 1.2), (0.8, 1.2), (-0.02, 0.02))  # ColorJitter(0.2, 0.2, 0.2, 0.02)
        self.geometry = None
        if crop_prob > 0:
            resizer = (RandomSquareResize(self.sides) if resize == "square"
                       else MultiScaleResize(self.sides if self.draw_side else self.sides[0], longest_edge))
            self.geometry = A.Compose([A.HorizontalFlip(p=hflip_prob), A.BBoxSafeRandomCrop(erosion_rate=0.0,
                                                                                            p=crop_prob), resizer],
                                      bbox_params=_bbox_params())
        self.set_random_state(np.random.default_rng(), random.Random())

    def set_random_state(self, random_generator: np.random.Generator, py_random: random.Random) -> None:
        self.random_generator, self.py_random = random_generator, py_random
        if self.geometry is not None:
            self.geometry.set_random_state(random_generator, py_random)

    def set_random_seed(self, seed: int) -> None:
        reseed(self, seed)

    def _happens(self, p: float) -> bool:  # albumentations' should_apply
        return p >= 1.0 or (p > 0.0 and self.py_random.random() < p)

    def _target_hw(self, height: int, width: int) -> tuple[int, int]:
        if self.resize_to is not None:  # an image processor's rule (`eval_augmentation_for`)
            return self.resize_to(height, width)
        side = self.py_random.choice(self.sides) if self.draw_side else self.sides[0]
        if self.resize == "square":
            return side, side
        scale = _capped_scale(side / min(height, width), height, width, self.longest_edge)
        return max(1, round(height * scale)), max(1, round(width * scale))

    @property
    def defers_pixels(self) -> bool:
        """Flip and resize can be left to the batch (`plan`): no crop, whose window albumentations draws."""
        return self.geometry is None

    def __call__(self, *, image: np.ndarray, bboxes, category, iscrowd) -> dict[str, Any]:
        if self.geometry is not None:
            out = dict(self.geometry(image=image, bboxes=bboxes, category=category, iscrowd=iscrowd))
            out["color_jitter"] = self._jitter_factors()
            return out
        plan = self.plan(image.shape[0], image.shape[1], bboxes, category, iscrowd)
        if plan.pop("hflip"):
            image = cv2.flip(image, 1)
        size = plan.pop("size")
        if size != image.shape[:2]:
            image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return {"image": image, **plan}

    def plan(self, height: int, width: int, bboxes, category, iscrowd) -> dict[str, Any]:
        """Everything but the pixels, for an image of height x width (only without a crop): the draws, the
        boxes (`xywh_abs` of the output image) with their labels, `hflip`, the output `size` (h, w) and the
        `color_jitter` factors. The pixels follow with `apply_geometry` (the batch) or `__call__` (cv2)."""
        self.py_random.random()  # the draw albumentations' Compose makes first (its p, 1 here)
        boxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
        # albumentations' box frame: corners normalised to the image, clipped, tiny boxes dropped
        corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1) / [width, height, width, height]
        corners = np.clip(corners, 0.0, 1.0)
        keep = _big_enough(corners, height, width)
        hflip = self._happens(self.hflip_prob)
        if hflip:
            corners = np.stack([1.0 - corners[:, 2], corners[:, 1], 1.0 - corners[:, 0], corners[:, 3]], axis=1)
        new_h, new_w = self._target_hw(height, width)
        keep &= _big_enough(corners, new_h, new_w)
        corners = corners[keep] * [new_w, new_h, new_w, new_h]
        return {"bboxes": np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1),
                "category": [c for c, k in zip(category, keep) if k],
                "iscrowd": [c for c, k in zip(iscrowd, keep) if k],
                "hflip": hflip, "size": (new_h, new_w), "color_jitter": self._jitter_factors()}

    def _jitter_factors(self) -> np.ndarray | None:
        if not self._happens(self.color_jitter_prob):
            return None
        factors = [self.py_random.uniform(*limits) for limits in self.jitter_ranges]
        order = [0, 1, 2, 3]
        self.random_generator.shuffle(order)
        return np.asarray(factors + order, dtype=np.float32)


def _big_enough(corners: np.ndarray, height: int, width: int, min_side: float = 1e-3) -> np.ndarray:
    """albumentations' `filter_bboxes` for clipped boxes with BboxParams(min_width=min_height=1e-3 pixels)."""
    w = (corners[:, 2] - corners[:, 0]) * width
    h = (corners[:, 3] - corners[:, 1]) * height
    return (w * h >= 1e-7) & (w >= min_side - 1e-7) & (h >= min_side - 1e-7)


def build_augmentation(train: bool, shortest_edges: Sequence[int], longest_edge: int, eval_size: int,
                       hflip_prob: float = 0.5, crop_prob: float = 0.0, color_jitter_prob: float = 0.5,
                       seed: int | None = None, resize: str = "shortest_edge") -> DetectionAugmentation:
    """Train: flip, optional bbox-safe crop, multi-scale resize, mild colour jitter. Eval: fixed resize.

    resize "shortest_edge": the shortest edge drawn from `shortest_edges` (eval: `eval_size`), the longest
    capped at `longest_edge`; "square": side x side with the side drawn from `shortest_edges` (eval:
    `eval_size` x `eval_size`), `longest_edge` unused.
    `seed` fixes the random state (`make_transform(..., seeds=AugmentationSeeds(...))` replaces it per image)."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
    if not train:
        return DetectionAugmentation(resize=resize, sides=eval_size, longest_edge=longest_edge)
    augmentation = DetectionAugmentation(resize=resize, sides=list(shortest_edges), longest_edge=longest_edge,
                                         hflip_prob=hflip_prob, crop_prob=crop_prob,
                                         color_jitter_prob=color_jitter_prob)
    if seed is not None:
        reseed(augmentation, seed)
    return augmentation


def eval_augmentation_for(size, *, rule: str = "detr", source: str = "the image processor") -> DetectionAugmentation:
    """The evaluation resize of an image processor's `size` (a dict or SizeDict): each image gets the (h, w) the
    processor itself resizes it to (`processor_size.ProcessorResize`, rounding included). A form the processor
    does not resize to is a ConfigError naming `source`, never a default size. `rule`: `processor_size.rule_of`."""
    return DetectionAugmentation(resize="shortest_edge", sides=0,
                                 resize_to=processor_resize(size, rule=rule, source=source))


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


def reseed(augmentation: DetectionAugmentation | A.Compose, seed: int | np.random.SeedSequence) -> None:
    """Give `augmentation` (and every transform in it) a fresh random state drawn from `seed`.

    Cheaper than `Compose.set_random_seed`, which builds a new generator per child transform: children share
    the Compose's generators (albumentations' own `set_random_state` propagation)."""
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    augmentation.set_random_state(np.random.default_rng(sequence),
                                  random.Random(int(sequence.generate_state(1, np.uint64)[0])))


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
