"""STAND-IN (replace on merge): the minimal API of the image reader another branch is writing.

`read_image(path)` -> uint8 [H, W, 3] RGB with EXIF orientation applied; `image_size(path)` -> (width, height)
after EXIF orientation from the header; both raise `ImageError` (one line naming the file).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that exchange width and height


class ImageError(ValueError):
    """An image file that cannot be used; the message is one line naming the file and the problem."""


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise ImageError(f"{path}: image file not found; check the image folder and the annotation's file name")
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes); replace or remove it")


def read_image(path: str) -> np.ndarray:
    _check_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I"):  # 16-bit: keep the high byte instead of clipping
                gray = (np.asarray(im).astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
                return np.repeat(gray[:, :, None], 3, axis=2)
            return np.array(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (unrecognised format); replace or remove it") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: cannot decode the image ({error}); the file is truncated or corrupt: "
                         "re-export or remove it") from None


def image_size(path: str) -> tuple[int, int]:
    _check_file(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({error}); replace or remove the file") from None
    return (height, width) if orientation in _SWAPS_AXES else (width, height)
