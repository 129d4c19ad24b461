"""The one image reader used by training, evaluation and prediction.

`read_image(path)` -> uint8 [H, W, 3] RGB, writable, EXIF orientation applied, high bit depths scaled (not
clipped) to 8 bit. `image_size(path)` -> (width, height) after EXIF orientation, from the header only.
Any unreadable file raises `ImageError` with a one-line message naming the file.

Fast path: JPEG and PNG are decoded by `torchvision.io.decode_image` (libjpeg-turbo / libpng; about 5x PIL's
open + convert on 640x480 JPEGs here), with `apply_exif_orientation=True` (torchvision >= 0.19). Anything it
cannot decode, and every other format, goes through PIL with `ImageOps.exif_transpose`. Both paths give the
same array for the same file where the decoders agree (tests compare them).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.io import ImageReadMode

from recipe.core.errors import ImageError  # noqa: F401  (raised here; defined with the other user errors)

# File suffixes read as images where a folder is listed (YOLO image folders, predict's inputs).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # transpose, rotate 270, transverse, rotate 90: width and height exchange




def read_image(path: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB of the file at `path`, EXIF orientation applied; raises ImageError."""
    chw = _read_fast(path)
    return np.ascontiguousarray(chw.permute(1, 2, 0).numpy()) if chw is not None else _read_with_pil(path)


def read_image_chw(path: str) -> torch.Tensor:
    """`read_image` as a uint8 [3, H, W] tensor, the decoder's own layout (no channel-last copy: the training
    batch is channel-first; an EXIF-rotated image may come as a strided view)."""
    chw = _read_fast(path)
    return chw if chw is not None else torch.from_numpy(_read_with_pil(path)).permute(2, 0, 1).contiguous()


def _read_fast(path: str) -> torch.Tensor | None:
    """uint8 [3, H, W] from torchvision's decoder for JPEG and PNG; None when PIL must decide."""
    data = _read_bytes(path)
    if not (data.startswith(_JPEG_MAGIC) or data.startswith(_PNG_MAGIC)):
        return None
    try:
        # mode RGB: libjpeg-turbo converts grayscale/CMYK/YCCK, libpng expands palette, gray and drops alpha.
        chw = _decode(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    except (RuntimeError, AttributeError):
        return None  # e.g. 12-bit or arithmetic-coded JPEG, truncated data: PIL decides (and words the error)
    if chw.dtype == torch.uint16:  # 16-bit PNG: keep the high byte, as PIL does for 48-bit RGB PNGs
        return torch.from_numpy((chw.numpy() >> 8).astype(np.uint8))
    return chw


def _decode(data: torch.Tensor) -> torch.Tensor:
    """uint8 (or uint16 for 16-bit PNG) [3, H, W], EXIF orientation applied.

    The op behind `torchvision.io.decode_image(data, mode=RGB, apply_exif_orientation=True)`
    (torchvision/io/image.py), called directly: since 0.29 the public function warns on every call that
    torchvision's decoders move to TorchCodec, which floods logs; setup.cfg keeps torchvision below 0.30."""
    return torch.ops.image.decode_image(data, ImageReadMode.RGB.value, True)


def image_size(path: str) -> tuple[int, int]:
    """(width, height) as `read_image` returns it (after EXIF orientation), read from the header only.

    A PNG's eXIf chunk counts only when it precedes the image data (where the PNG specification places it):
    looking further would decode the whole file."""
    _check_file(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            exif = im.info.get("exif") if im.format == "PNG" else True
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1) if exif else 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({_reason(error)}); replace or remove the file") from None
    return (height, width) if orientation in _SWAPS_AXES else (width, height)


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise ImageError(f"{path}: image file not found; check the image folder and the annotation's file name")
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes); replace or remove it")


def _read_bytes(path: str) -> bytes:
    _check_file(path)
    with open(path, "rb") as f:
        return f.read()


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _read_with_pil(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            return _pil_to_rgb8(ImageOps.exif_transpose(im))
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (unrecognised format); replace or remove it") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"{path}: cannot decode the image ({_reason(error)}); the file is truncated or "
                         f"corrupt: re-export or remove it") from None


def _pil_to_rgb8(im: Image.Image) -> np.ndarray:
    """uint8 [H, W, 3]; integer modes wider than 8 bit and float modes are scaled, never clipped."""
    if im.mode.startswith("I"):  # I;16* (16-bit) and I (32-bit integer)
        values = np.asarray(im).astype(np.int64)
        if values.min() >= 0 and values.max() <= 65535:  # 16-bit data: high byte, as on the PNG fast path
            gray = (values >> 8).astype(np.uint8)
        else:
            gray = _scale_wide(values.astype(np.float64), full_scale=None)
    elif im.mode == "F":
        gray = _scale_wide(np.asarray(im).astype(np.float64), full_scale=1.0)
    else:
        return np.array(im.convert("RGB"))  # np.array copies: writable (torch warns on read-only arrays)
    return np.repeat(gray[:, :, None], 3, axis=2)


def _scale_wide(values: np.ndarray, *, full_scale: float | None) -> np.ndarray:
    """Values in [0, full_scale] (floats in [0, 1]) map linearly to [0, 255]; anything else (32-bit integers
    beyond 16 bit, HDR floats) is stretched from its own min..max, because its nominal range is unknown."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    nominal = full_scale is not None and values.min() >= 0 and values.max() <= full_scale
    low, high = (0.0, full_scale) if nominal else (values.min(), values.max())
    if high <= low:
        return np.zeros(values.shape, np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)
