"""DetectionCollator: pad a list of images to the batch's largest size and pass the pixel mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class DetectionCollator:
    """features: [{"pixel_values": [3, H_i, W_i], "labels": dict}] ->
    {"pixel_values": [B, 3, H, W], "pixel_mask": [B, H, W] int64 (1 = real pixel), "labels": list[dict]}.

    Padding is bottom-right with zeros, done by the image processor's `pad` so it matches inference.
    """

    image_processor: Any

    def __call__(self, features: list[dict]) -> dict:
        height = max(f["pixel_values"].shape[-2] for f in features)
        width = max(f["pixel_values"].shape[-1] for f in features)
        images, masks = [], []
        for f in features:
            image, mask, _ = self.image_processor.pad(f["pixel_values"], (height, width))
            images.append(image)
            masks.append(mask)
        return {"pixel_values": torch.stack(images), "pixel_mask": torch.stack(masks).long(),
                "labels": [f["labels"] for f in features]}
