"""The batch's arithmetic where the model runs: a uint8 batch (`DetectionCollator.normalise_on_device`) flipped,
resized, colour-jittered (`color.jitter_`) and normalised as the image processor would, with the same float32
operations; the collator's own CPU normalisation uses the same per-plane functions."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from recipe.core.stage_timer import stage
from recipe.pipeline.color_jitter import jitter_


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
            normalised = normalise_with_torch(values, batch["pixel_mask"], mean, std, factor, jitter)
        else:
            # on the CPU, the collator's numpy path (one thread per plane op: 2x faster than torch here)
            normalise = _normalise_on_cpu if pixel_values.device.type == "cpu" else normalise_with_torch
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


def normalise_with_torch(pixel_values: torch.Tensor, pixel_mask: torch.Tensor, mean, std, factor,
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
        normalise_image(values[i], planes_to_normalise(image, jitter, i), mean, std, factor)
    return out


def normalise_image(out: np.ndarray, planes: list[np.ndarray], mean, std, factor) -> None:
    """out [3, H, W] = the normalised planes (h x w each) at the top left, zero padding elsewhere."""
    h, w = planes[0].shape
    for c, plane in enumerate(planes):
        _normalise_plane(out[c, :h, :w], plane, mean, std, factor, c)
    out[:, h:, :], out[:, :h, w:] = 0.0, 0.0


def image_planes(image: torch.Tensor) -> list[np.ndarray]:
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


def _jittered(jitter: torch.Tensor | None, i: int) -> bool:
    return jitter is not None and not bool(torch.isnan(jitter[i, 0]))


def planes_to_normalise(image: torch.Tensor, jitter: torch.Tensor | None, i: int) -> list[np.ndarray]:
    """The planes to normalise: the uint8 image's, or, when it is jittered, float32 planes in 0..255."""
    if not _jittered(jitter, i):
        return image_planes(image)
    jittered = image[None].to(torch.float32)  # a new tensor: jittered in place
    jitter_(jittered, jitter[i:i + 1], bound=255.0)
    return list(jittered[0].numpy())
