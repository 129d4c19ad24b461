"""Augmentation (albumentations, bbox-safe) + image processor -> `pixel_values` and model labels.

Labels that reach the model (one dict per image):
  class_labels [N] int64 contiguous 0..C-1 (crowd boxes removed), boxes [N, 4] float32 `cxcywh_norm`
  clamped to [0, 1] with w, h > 0, image_id [1] int64, orig_size [2] (h, w of the file's image),
  size [2] (h, w after augmentation, before padding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from PIL import Image

from .boxes import xywh_abs_to_cxcywh_norm


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


def build_augmentation(train: bool, shortest_edges: Sequence[int], longest_edge: int, eval_size: int,
                       hflip_prob: float = 0.5, crop_prob: float = 0.0, color_jitter_prob: float = 0.5,
                       ) -> A.Compose:
    """Train: flip, optional bbox-safe crop, multi-scale resize, mild colour jitter. Eval: fixed resize."""
    bbox_params = A.BboxParams(format="coco", label_fields=["category", "iscrowd"], clip=True,
                               filter_invalid_bboxes=True, min_width=1e-3, min_height=1e-3)
    if not train:
        return A.Compose([MultiScaleResize(eval_size, longest_edge)], bbox_params=bbox_params)
    steps = [A.HorizontalFlip(p=hflip_prob)]
    if crop_prob > 0:
        steps.append(A.BBoxSafeRandomCrop(erosion_rate=0.0, p=crop_prob))
    steps.append(MultiScaleResize(list(shortest_edges), longest_edge))
    if color_jitter_prob > 0:
        steps.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=color_jitter_prob))
    return A.Compose(steps, bbox_params=bbox_params, seed=None)


def load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))  # writable: torch warns on read-only arrays


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


def make_transform(image_processor, augmentation: A.Compose) -> Callable[[dict], dict]:
    """A `Dataset.with_transform` function: table rows -> {"pixel_values": [...], "labels": [...]}."""

    def transform(batch: dict) -> dict:
        pixel_values, labels = [], []
        for image_id, path, height, width, objects in zip(batch["image_id"], batch["image_path"], batch["height"],
                                                          batch["width"], batch["objects"]):
            image = load_rgb(path)
            if image.shape[:2] != (height, width):
                # Annotated size wins: boxes and evaluation are in its pixels. Warn, don't crash mid-epoch.
                _warn_size_once(path, image.shape[:2], (height, width))
                image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
            out = augmentation(image=image, bboxes=np.asarray(objects["bbox"], dtype=np.float64).reshape(-1, 4),
                               category=list(objects["category"]), iscrowd=list(objects["iscrowd"]))
            img = out["image"]
            pixel_values.append(image_processor(images=img, do_resize=False, do_pad=False,
                                                return_tensors="pt")["pixel_values"][0])
            labels.append(make_labels(out["bboxes"], out["category"], out["iscrowd"], image_id,
                                      (height, width), img.shape[:2]))
        return {"pixel_values": pixel_values, "labels": labels}

    return transform
