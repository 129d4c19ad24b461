"""Box format conversions and box frames. Every function names its input and output format.

Formats: `xywh_abs` (COCO: top-left corner, width, height in pixels), `xyxy_abs` (corners in pixels),
`cxcywh_norm` (centre, width, height as fractions of the image: what DETR-family models predict).
A box frame is the (h, w) in original-image pixels that `cxcywh_norm` boxes are fractions of: the image, or for
models that see the padded canvas as the image (`DetectionCollator.boxes_on_canvas`), the canvas.
"""

from __future__ import annotations

import numpy as np
import torch


def clamp_xywh_abs(box: list[float], width: float, height: float) -> list[float]:
    """Clamp one `xywh_abs` box to the image; the result may have w or h <= 0 (caller decides). A side inside the
    image keeps its values exactly ((x + w) - x is not always w in floats: 222.00000000000003 + 38 - 222.00000000000003
    is 37.99999999999997, which would count as a change)."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return [x1, y1, w if (x1, x2) == (x, x + w) else x2 - x1, h if (y1, y2) == (y, y + h) else y2 - y1]


def xywh_abs_to_xyxy_abs(boxes: np.ndarray) -> np.ndarray:
    """`xywh_abs` [N, 4] -> `xyxy_abs` [N, 4] float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def xyxy_abs_to_xywh_abs(boxes: np.ndarray) -> np.ndarray:
    """`xyxy_abs` [N, 4] -> `xywh_abs` [N, 4] float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def xywh_abs_to_cxcywh_norm(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """`xywh_abs` [N, 4] -> `cxcywh_norm` [N, 4], clamped to [0, 1] (corners clamped before converting)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = np.clip(boxes[:, 0] / width, 0.0, 1.0)
    y1 = np.clip(boxes[:, 1] / height, 0.0, 1.0)
    x2 = np.clip((boxes[:, 0] + boxes[:, 2]) / width, 0.0, 1.0)
    y2 = np.clip((boxes[:, 1] + boxes[:, 3]) / height, 0.0, 1.0)
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1).astype(np.float32)


def cxcywh_norm_to_xywh_abs(boxes: torch.Tensor, sizes_hw: torch.Tensor) -> torch.Tensor:
    """`cxcywh_norm` [B, K, 4] -> `xywh_abs` [B, K, 4] in the pixels of `sizes_hw` [B, 2] (height, width)."""
    cx, cy, w, h = boxes.unbind(-1)
    img_h = sizes_hw[:, 0:1].to(boxes.dtype)
    img_w = sizes_hw[:, 1:2].to(boxes.dtype)
    return torch.stack([(cx - w / 2) * img_w, (cy - h / 2) * img_h, w * img_w, h * img_h], dim=-1)


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
