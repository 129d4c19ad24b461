"""The augmentation of one image and its `xywh_abs` boxes (albumentations' semantics, bbox-safe): horizontal flip,
optional bbox-safe crop, multi-scale or square resize, colour-jitter factors; and the evaluation resize of an image
processor. `transforms.DetectionTransform` runs it on table rows."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import cv2
import numpy as np

from recipe.pipeline.processor_size import processor_resize

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


def reseed(augmentation: DetectionAugmentation | A.Compose, seed: int | np.random.SeedSequence) -> None:
    """Give `augmentation` (and every transform in it) a fresh random state drawn from `seed`.

    Cheaper than `Compose.set_random_seed`, which builds a new generator per child transform: children share
    the Compose's generators (albumentations' own `set_random_state` propagation)."""
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    augmentation.set_random_state(np.random.default_rng(sequence),
                                  random.Random(int(sequence.generate_state(1, np.uint64)[0])))
