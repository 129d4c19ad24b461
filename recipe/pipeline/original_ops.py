"""The originals' augmentation operations on one image and its `xyxy_abs` boxes, as pure functions: each op's random
draws (`draw_*`, from a `random.Random`) apart from the op itself, so tests give the op hand-made parameters.

Semantics follow torchvision.transforms.v2 as RT-DETR / D-FINE / DEIM use it (RandomPhotometricDistort,
RandomZoomOut, RandomIoUCrop, SanitizeBoundingBoxes, RandomAffine), DEIM's Mosaic
(Intellindust-AI-Lab/DEIM engine/data/transforms/mosaic.py) and MixUp (engine/data/dataloader.py), and DETR's
RandomSizeCrop (rf-detr rfdetr/datasets/transforms.py). `presets.py` chains them per family.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

cv2.setNumThreads(0)  # see augment.py: the loader's workers are the parallelism


@dataclass
class Sample:
    """One image (uint8 [H, W, 3]) and its boxes (`xyxy_abs` float64 [N, 4]) with their labels (int64 [N])."""

    image: np.ndarray
    boxes: np.ndarray
    category: np.ndarray
    iscrowd: np.ndarray = field(default=None)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.category = np.asarray(self.category, dtype=np.int64).reshape(-1)
        self.iscrowd = (np.zeros_like(self.category) if self.iscrowd is None
                        else np.asarray(self.iscrowd, dtype=np.int64).reshape(-1))

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    def with_boxes(self, image: np.ndarray, boxes: np.ndarray, keep: np.ndarray | None = None) -> Sample:
        if keep is None:
            return Sample(image, boxes, self.category, self.iscrowd)
        return Sample(image, boxes[keep], self.category[keep], self.iscrowd[keep])


def clamp_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """`xyxy_abs` boxes clamped to a height x width canvas (torchvision's clamp_bounding_boxes)."""
    return np.clip(boxes, 0.0, [width, height, width, height])


# --- photometric distort (torchvision RandomPhotometricDistort, p per op) ---

def draw_photometric(rnd: random.Random, p: float = 0.5, brightness=(0.875, 1.125), contrast=(0.5, 1.5),
                     saturation=(0.5, 1.5), hue=(-0.05, 0.05)) -> dict:
    """Each factor drawn with probability p (else None), contrast before or after saturation/hue, and a channel
    permutation with probability p: torchvision's draws, in its order."""
    params = {}
    for key, (low, high) in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation),
                             ("hue", hue)):
        params[key] = rnd.uniform(low, high) if rnd.random() < p else None
    params["contrast_before"] = rnd.random() < 0.5
    params["permutation"] = rnd.sample(range(3), 3) if rnd.random() < p else None
    return params


def photometric_distort(image: np.ndarray, params: dict) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 3] through torchvision's own kernels (so the pixels are torchvision's)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    if params["brightness"] is not None:
        x = TF.adjust_brightness(x, params["brightness"])
    if params["contrast"] is not None and params["contrast_before"]:
        x = TF.adjust_contrast(x, params["contrast"])
    if params["saturation"] is not None:
        x = TF.adjust_saturation(x, params["saturation"])
    if params["hue"] is not None:
        x = TF.adjust_hue(x, params["hue"])
    if params["contrast"] is not None and not params["contrast_before"]:
        x = TF.adjust_contrast(x, params["contrast"])
    if params["permutation"] is not None:
        x = x[params["permutation"]]
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


# --- zoom out (torchvision RandomZoomOut) ---

def draw_zoom_out(rnd: random.Random, height: int, width: int, side_range=(1.0, 4.0)) -> tuple[int, int, int, int]:
    """(left, top, canvas height, canvas width): the canvas is r x the image (r in side_range), the image placed at
    a uniform offset (torchvision's rounding: int())."""
    r = side_range[0] + rnd.random() * (side_range[1] - side_range[0])
    canvas_w, canvas_h = int(width * r), int(height * r)
    left, top = int((canvas_w - width) * rnd.random()), int((canvas_h - height) * rnd.random())
    return left, top, canvas_h, canvas_w


def zoom_out(sample: Sample, left: int, top: int, canvas_h: int, canvas_w: int, fill: int = 0) -> Sample:
    """The image pasted at (left, top) on a canvas filled with `fill`; boxes moved by the same offset."""
    h, w = sample.hw
    canvas = np.full((canvas_h, canvas_w, 3), fill, dtype=np.uint8)
    canvas[top:top + h, left:left + w] = sample.image
    return sample.with_boxes(canvas, sample.boxes + [left, top, left, top])


# --- IoU crop (SSD; torchvision RandomIoUCrop) ---

IOU_CROP_OPTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def draw_iou_crop(rnd: random.Random, height: int, width: int, boxes: np.ndarray, min_scale: float = 0.3,
                  max_scale: float = 1.0, min_aspect_ratio: float = 0.5, max_aspect_ratio: float = 2.0,
                  options=IOU_CROP_OPTIONS, trials: int = 40, max_rounds: int = 1000):
    """torchvision's search: draw a minimum IoU from `options` (1.0 = leave the image as it is), then up to
    `trials` windows of 0.3-1 x the sides with aspect 0.5-2 that hold a box centre and overlap some such box by at
    least that IoU. -> (top, left, height, width, centre-inside mask [N]) or None (no crop). torchvision loops until
    it returns; `max_rounds` option draws bound that here (an image without boxes draws 1.0 within a few)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    for _ in range(max_rounds):
        min_iou = options[rnd.randrange(len(options))]
        if min_iou >= 1.0:
            return None
        for _ in range(trials):
            new_w = int(width * (min_scale + (max_scale - min_scale) * rnd.random()))
            new_h = int(height * (min_scale + (max_scale - min_scale) * rnd.random()))
            if new_h == 0 or not min_aspect_ratio <= new_w / new_h <= max_aspect_ratio:
                continue
            left, top = int((width - new_w) * rnd.random()), int((height - new_h) * rnd.random())
            right, bottom = left + new_w, top + new_h
            if left == right or top == bottom:
                continue
            inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
            if not inside.any():
                continue
            if box_iou(boxes[inside], np.array([[left, top, right, bottom]], dtype=np.float64)).max() < min_iou:
                continue
            return top, left, new_h, new_w, inside
    return None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of `xyxy_abs` boxes a [N, 4] and b [M, 4] -> [N, M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def crop(sample: Sample, top: int, left: int, height: int, width: int, inside: np.ndarray | None = None) -> Sample:
    """The window [top, top + height) x [left, left + width); boxes moved into it and clamped to it. `inside`
    (IoU crop): boxes whose centre fell outside become zero-size (torchvision's), for `sanitize` to drop."""
    image = sample.image[top:top + height, left:left + width]
    boxes = clamp_boxes(sample.boxes - [left, top, left, top], image.shape[0], image.shape[1])
    if inside is not None:
        boxes[~np.asarray(inside, dtype=bool)] = 0.0
    return sample.with_boxes(image, boxes)


def sanitize(sample: Sample, min_size: float = 1.0, min_area: float = 1.0) -> Sample:
    """torchvision SanitizeBoundingBoxes: drop boxes with a side under `min_size`, an area under `min_area`, a
    negative coordinate or one past the image, with their labels."""
    b, (h, w) = sample.boxes, sample.hw
    ws, hs = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = ((ws >= min_size) & (hs >= min_size) & (ws * hs >= min_area) & (b >= 0).all(axis=1)
            & (b[:, 0] <= w) & (b[:, 2] <= w) & (b[:, 1] <= h) & (b[:, 3] <= h))
    return sample.with_boxes(sample.image, b, keep)


# --- flip and resize ---

def hflip(sample: Sample) -> Sample:
    w = sample.hw[1]
    b = sample.boxes
    return sample.with_boxes(np.ascontiguousarray(sample.image[:, ::-1]),
                             np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1))


def resize(sample: Sample, height: int, width: int) -> Sample:
    """To height x width (cv2 bilinear, as the recipe's loader); boxes scaled by the same factors."""
    h, w = sample.hw
    if (h, w) == (height, width):
        return sample
    image = cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_LINEAR)
    return sample.with_boxes(image, sample.boxes * [width / w, height / h, width / w, height / h])


def shortest_edge_hw(height: int, width: int, side: int, longest_edge: int | None = None) -> tuple[int, int]:
    """(h, w) with the shortest edge `side`, aspect kept, the longest capped at `longest_edge` when given
    (torchvision Resize(int, max_size) rounding: int())."""
    short, long = min(height, width), max(height, width)
    new_short, new_long = side, int(side * long / short)
    if longest_edge and new_long > longest_edge:
        new_short, new_long = int(longest_edge * new_short / new_long), longest_edge
    return (new_short, new_long) if height <= width else (new_long, new_short)


# --- DETR's RandomSizeCrop (rf-detr / LW-DETR) ---

def draw_size_crop(rnd: random.Random, height: int, width: int, min_size: int, max_size: int):
    """(top, left, h, w): a window of sides drawn in [min_size, min(side, max_size)] (DETR's RandomSizeCrop;
    a side shorter than min_size is taken whole), at a uniform offset (torchvision RandomCrop.get_params)."""
    w = rnd.randint(min(min_size, width), min(width, max_size))
    h = rnd.randint(min(min_size, height), min(height, max_size))
    top = rnd.randint(0, height - h)
    left = rnd.randint(0, width - w)
    return top, left, h, w


def size_crop(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """DETR's crop: boxes moved, clamped, and kept only with positive width and height."""
    cropped = crop(sample, top, left, height, width)
    b = cropped.boxes
    return cropped.with_boxes(cropped.image, b, (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))


# --- DEIM's Mosaic: four images on a 2 x 2 canvas, then a random affine ---

def mosaic(samples: list[Sample], output_size: int) -> Sample:
    """Each sample resized to shortest edge `output_size`, pasted at the corners of a canvas twice the largest
    (h, w) (fill 0), boxes moved with them (DEIM Mosaic.create_mosaic_from_dataset)."""
    resized = [resize(s, *shortest_edge_hw(*s.hw, output_size)) for s in samples]
    max_h, max_w = max(s.hw[0] for s in resized), max(s.hw[1] for s in resized)
    canvas = np.zeros((2 * max_h, 2 * max_w, 3), dtype=np.uint8)
    boxes, category, iscrowd = [], [], []
    for s, (x, y) in zip(resized, ((0, 0), (max_w, 0), (0, max_h), (max_w, max_h))):
        h, w = s.hw
        canvas[y:y + h, x:x + w] = s.image
        boxes.append(s.boxes + [x, y, x, y])
        category.append(s.category)
        iscrowd.append(s.iscrowd)
    return Sample(canvas, np.concatenate(boxes), np.concatenate(category), np.concatenate(iscrowd))


def draw_affine(rnd: random.Random, height: int, width: int, degrees: float = 10.0, translate=(0.1, 0.1),
                scale=(0.5, 1.5)) -> tuple[float, tuple[int, int], float]:
    """torchvision RandomAffine's draws: angle in [-degrees, degrees], a translation of at most translate x the
    sides (rounded), a scale in `scale`, no shear."""
    angle = rnd.uniform(-degrees, degrees)
    tx = int(round(rnd.uniform(-translate[0] * width, translate[0] * width)))
    ty = int(round(rnd.uniform(-translate[1] * height, translate[1] * height)))
    return angle, (tx, ty), rnd.uniform(*scale)


def affine_matrix(height: int, width: int, angle: float, translate: tuple[int, int], scale: float) -> np.ndarray:
    """The forward 2 x 3 matrix: scale and rotate (`angle` degrees, counter-clockwise on screen) about the image
    centre, then translate."""
    cx, cy = width * 0.5, height * 0.5
    a = math.radians(angle)
    cos, sin = scale * math.cos(a), scale * math.sin(a)
    # y points down: a counter-clockwise turn on screen is x' = cos x + sin y, y' = -sin x + cos y about the centre
    return np.array([[cos, sin, cx - cos * cx - sin * cy + translate[0]],
                     [-sin, cos, cy + sin * cx - cos * cy + translate[1]]], dtype=np.float64)


def affine(sample: Sample, angle: float, translate: tuple[int, int], scale: float, fill: int = 0) -> Sample:
    """The image warped by `affine_matrix` on its own canvas (fill outside); each box becomes the enclosing box of
    its four moved corners, clamped to the canvas (torchvision's affine of bounding boxes)."""
    h, w = sample.hw
    m = affine_matrix(h, w, angle, translate, scale)
    # cv2 maps pixel indices, whose centres sit at index + 0.5 in box coordinates
    pixels = np.concatenate([m[:, :2], (m[:, 2] + m[:, :2] @ [0.5, 0.5] - 0.5)[:, None]], axis=1)
    image = cv2.warpAffine(sample.image, pixels, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(fill, fill, fill))
    b = sample.boxes
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], axis=1)  # [N, 4, 2]
    moved = corners @ m[:, :2].T + m[:, 2]
    boxes = np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1) if len(b) else b
    return sample.with_boxes(image, clamp_boxes(boxes, h, w))


# --- MixUp (DEIM: two images of the same size blended, both images' boxes kept) ---

def draw_mixup_beta(rnd: random.Random) -> float:
    return round(rnd.uniform(0.45, 0.55), 6)


def mixup(sample: Sample, other: Sample, beta: float) -> Sample:
    """beta x sample + (1 - beta) x other (same size; DEIM's images.roll(1) * (1 - beta) + images * beta), rounded
    to uint8; the boxes of both."""
    if sample.hw != other.hw:
        raise ValueError(f"mixup needs images of one size, got {sample.hw} and {other.hw}")
    image = np.rint(sample.image.astype(np.float32) * beta + other.image.astype(np.float32) * (1.0 - beta))
    return Sample(image.clip(0, 255).astype(np.uint8), np.concatenate([sample.boxes, other.boxes]),
                  np.concatenate([sample.category, other.category]), np.concatenate([sample.iscrowd, other.iscrowd]))
