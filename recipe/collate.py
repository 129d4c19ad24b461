"""DetectionCollator: normalise and pad a batch of uint8 images once, with the pixel mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import torch

from .timing import stage


@dataclass
class DetectionCollator:
    """features: [{"pixel_values": [3, H_i, W_i], "labels": dict}] ->
    {"pixel_values": [B, 3, H, W] float32, "pixel_mask": [B, H, W] int64 (1 = real pixel), "labels": list[dict]}.

    uint8 images are rescaled and normalised as the image processor says (its `do_rescale`, `rescale_factor`,
    `do_normalize`, `image_mean`, `image_std`: DETR normalises with ImageNet statistics, RT-DETR only
    rescales), with the same float32 arithmetic as its torchvision backend, so the values equal the processor's
    output. Floating-point images are taken as already processed. Padding is bottom-right with zeros after
    normalisation (as the processor's `pad`), to the batch's largest height and width.
    """

    image_processor: Any
    pad_to_multiple_of: int = 1  # windowed ViT backbones need sizes in multiples of patch x windows

    def __call__(self, features: list[dict]) -> dict:
        with stage("collate"):
            return self._collate(features)

    def _collate(self, features: list[dict]) -> dict:
        images = [f["pixel_values"] for f in features]
        m = self.pad_to_multiple_of
        height = -(-max(image.shape[-2] for image in images) // m) * m
        width = -(-max(image.shape[-1] for image in images) // m) * m
        # empty, not zeros: each element is written once below, as image or as padding
        pixel_values = torch.empty((len(images), 3, height, width), dtype=torch.float32)
        pixel_mask = torch.empty((len(images), height, width), dtype=torch.int64)
        mean, std, factor = self._normalisation()
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            region = pixel_values[i, :, :h, :w]
            if image.dtype == torch.uint8 and mean is not None:
                _subtract_planes(region, image, mean)  # torchvision's normalize: (x - mean) / std
                region.div_(std)
            else:
                _copy_planes(region, image)
                if image.dtype == torch.uint8 and factor is not None:
                    region.mul_(factor)
            for tensor, value in ((pixel_values[i], 0.0), (pixel_mask[i], 0)):
                tensor[..., h:, :].fill_(value)
                tensor[..., :h, w:].fill_(value)
            pixel_mask[i, :h, :w] = 1
        return {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": [f["labels"] for f in features]}

    def _normalisation(self) -> tuple[torch.Tensor | None, torch.Tensor | None, float | None]:
        """(mean, std) in 0..255 units, or only a rescale factor, read from the processor at each call (it
        may be changed after the collator is built). Fused as transformers' TorchvisionBackend
        `_fuse_mean_std_and_rescale_factor` does: mean and std divided by the rescale factor, in float32."""
        p = self.image_processor
        do_rescale, do_normalize = getattr(p, "do_rescale", True), getattr(p, "do_normalize", True)
        rescale_factor = getattr(p, "rescale_factor", 1 / 255)
        if not do_normalize:
            return None, None, (rescale_factor if do_rescale else None)
        mean = torch.tensor(p.image_mean, dtype=torch.float32).reshape(-1, 1, 1)
        std = torch.tensor(p.image_std, dtype=torch.float32).reshape(-1, 1, 1)
        if do_rescale:
            mean, std = mean * (1.0 / rescale_factor), std * (1.0 / rescale_factor)
        return mean, std, None


def _planes(image: torch.Tensor) -> list[torch.Tensor] | None:
    """The 3 planes of a uint8 image that is a channel-last array seen as [3, H, W] (what the transform makes), as
    contiguous tensors; None for other layouts. Reading that layout strided is ~2.5x slower than splitting first."""
    if image.dtype != torch.uint8 or image.stride(0) != 1:
        return None
    return [torch.from_numpy(plane) for plane in cv2.split(image.permute(1, 2, 0).numpy())]


def _copy_planes(region: torch.Tensor, image: torch.Tensor) -> None:
    """region[c] = image[c] as float32."""
    planes = _planes(image)
    if planes is None:
        region.copy_(image)
        return
    for c, plane in enumerate(planes):
        region[c].copy_(plane)


def _subtract_planes(region: torch.Tensor, image: torch.Tensor, mean: torch.Tensor) -> None:
    """region[c] = float32(image[c]) - mean[c], converting and subtracting in one pass (the same float32 values
    as a copy followed by `sub_`)."""
    planes = _planes(image)
    if planes is None:
        torch.sub(image, mean, out=region)
        return
    for c, plane in enumerate(planes):
        torch.sub(plane, mean[c], out=region[c])
