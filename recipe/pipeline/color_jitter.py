"""Colour jitter on float images, a batch at once with per-image factors: torchvision's float semantics.

The training transform only draws each image's factors (`augment.DetectionAugmentation`); they travel with
the uint8 batch as `color_jitter` and are applied here, where the batch is normalised (on the GPU in training,
`normalise.normalise_batch`). One image's factors, [8] float32: brightness, contrast, saturation, hue, then the
order of the four operations (0 brightness, 1 contrast, 2 saturation, 3 hue), as albumentations' ColorJitter
draws them. Each operation is torchvision's `adjust_*` on a float image in [0, 1] (clamped after each one);
albumentations computes the same operations on uint8 and rounds after each (tests bound the difference).
"""

from __future__ import annotations

import numpy as np
import torch

JITTER_FIELDS = 8  # brightness, contrast, saturation, hue, order[4]


def _gray(image: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] -> [..., 1, H, W], torchvision's `rgb_to_grayscale` weights and operation order."""
    r, g, b = image.unbind(-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)


def _blend(image: torch.Tensor, other, ratio: float, bound: float) -> torch.Tensor:
    return (ratio * image + (1.0 - ratio) * other).clamp_(0.0, bound)


def _brightness(image, factor, bound):
    return (image * factor).clamp_(0.0, bound)


def _contrast(image, factor, bound):
    return _blend(image, _gray(image).mean(), factor, bound)


def _saturation(image, factor, bound):
    return _blend(image, _gray(image), factor, bound)


def _hue(image, factor, bound):
    h, s, v = rgb_to_hsv(image).unbind(-3)
    return hsv_to_rgb(torch.stack(((h + factor).remainder(1.0), s, v), dim=-3))


_OPERATIONS = (_brightness, _contrast, _saturation, _hue)


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] RGB (any scale) -> HSV: hue and saturation in [0, 1], value on the RGB's scale."""
    r, g, b = image.unbind(-3)
    maxc, minc = image.amax(dim=-3), image.amin(dim=-3)
    gray = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    s = chroma / torch.where(gray, ones, maxc)
    divisor = torch.where(gray, ones, chroma)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    from_r = (maxc == r) * (bc - gc)
    from_g = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    from_b = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = ((from_r + from_g + from_b) / 6.0 + 1.0).remainder(1.0)
    return torch.stack((h, s, maxc), dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_hsv` (channel = v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6 with
    n = 5, 3, 1 for R, G, B: the sector formula without selecting a sector)."""
    h, s, v = hsv.unbind(-3)
    sixth = h * 6.0
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (sixth + n).remainder(6.0)
        channels.append(v - v * s * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0))
    return torch.stack(channels, dim=-3)


def color_jitter(images: torch.Tensor, params: torch.Tensor, mask: torch.Tensor | None = None,
                 bound: float = 1.0) -> torch.Tensor:
    """images [N, 3, H, W] float in [0, bound], params [N, 8] (see the module; a NaN row: left as it is) ->
    the jittered images (a new tensor).

    `mask` [N, H, W] (1 = the image's pixel, a top-left rectangle): only those pixels are jittered and the
    contrast mean is theirs; the rest (the padding) is left as it is. `bound` 255: images in 0..255 (the
    operations scale with it)."""
    out = images.clone()
    jitter_(out, params, mask, bound)
    return out


def jitter_(images: torch.Tensor, params: torch.Tensor, mask: torch.Tensor | None = None,
            bound: float = 1.0) -> None:
    """`color_jitter` in place, image by image on each image's own pixels."""
    rows = params.detach().cpu().tolist()
    if mask is not None:
        heights = mask.any(dim=2).sum(dim=1).tolist()
        widths = mask.any(dim=1).sum(dim=1).tolist()
    for n, row in enumerate(rows):
        if row[0] != row[0]:  # NaN: not jittered
            continue
        region = images[n] if mask is None else images[n, :, :heights[n], :widths[n]]
        value = region
        for op in row[4:]:
            value = _OPERATIONS[int(op)](value, row[int(op)], bound)
        region.copy_(value)


def jitter_image(image: np.ndarray, factors) -> np.ndarray:
    """One uint8 [H, W, 3] image jittered with `factors` ([8], see the module), back to uint8 (for viewing what
    training sees; training itself keeps the float values)."""
    chw = torch.from_numpy(image).permute(2, 0, 1)[None].to(torch.float32) / 255.0
    out = color_jitter(chw, torch.as_tensor(factors, dtype=torch.float32)[None])[0]
    return (out * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
