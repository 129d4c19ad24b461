"""Boxes drawn on images (predictions, ground truth) and image grids, readable on small and large images.

Boxes are `xywh_abs` in the pixels of the image they are drawn on. One colour per class (by contiguous label).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Distinct, saturated colours (Tableau 10 then the light half of Tableau 20): class i gets PALETTE[i % 20].
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (174, 199, 232), (255, 187, 120),
           (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148), (247, 182, 210), (199, 199, 199),
           (219, 219, 141), (158, 218, 229)]


def class_colour(label: int) -> tuple[int, int, int]:
    return PALETTE[int(label) % len(PALETTE)]


def line_width_for(width: int, height: int) -> int:
    """About 0.3 % of the image's mean side, at least 2 px: thin on a 320 px frame, visible on a 4000 px photo."""
    return max(2, round(0.003 * (width + height) / 2))


def font_for(line_width: int) -> ImageFont.ImageFont:
    # PIL's built-in scalable font (no system font needed); 11 px minimum stays legible on small images.
    return ImageFont.load_default(size=min(64, max(11, 6 * line_width)))


def draw_boxes(image, boxes_xywh_abs, labels, *, names: dict[int, str], scores=None) -> Image.Image:
    """A copy of `image` (PIL or uint8 [H, W, 3]) with each box outlined in its class colour and a filled tag
    `name` or `name 0.87` above it (inside the box where there is no room above)."""
    image = (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB")
    canvas = ImageDraw.Draw(image)
    width = line_width_for(*image.size)
    font = font_for(width)
    boxes = np.asarray(boxes_xywh_abs, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(scores) if scores is not None and len(boxes) else range(len(boxes))  # best drawn last
    for i in order:
        x, y, w, h = boxes[i]
        colour = class_colour(labels[i])
        canvas.rectangle([x, y, x + w, y + h], outline=colour, width=width)
        text = names.get(int(labels[i]), str(labels[i])) + ("" if scores is None else f" {float(scores[i]):.2f}")
        left, top, right, bottom = canvas.textbbox((0, 0), text, font=font)
        tag_w, tag_h = right - left + 2 * width, bottom - top + 2 * width
        tag_x = max(0, min(x, image.width - tag_w))  # kept inside the image
        tag_y = y - tag_h if y - tag_h >= 0 else y
        canvas.rectangle([tag_x, tag_y, tag_x + tag_w, tag_y + tag_h], fill=colour)
        dark_text = sum(c * k for c, k in zip(colour, (0.299, 0.587, 0.114))) > 150  # luma: black text on light tags
        canvas.text((tag_x + width - left, tag_y + width - top), text, font=font,
                    fill=(0, 0, 0) if dark_text else (255, 255, 255))
    return image


def titled(image: Image.Image, title: str) -> Image.Image:
    """The image with a white strip above it holding `title`."""
    font = ImageFont.load_default(size=max(11, image.height // 20))
    left, top, _, bottom = ImageDraw.Draw(image).textbbox((0, 0), title, font=font)
    strip = bottom - top + 8
    out = Image.new("RGB", (image.width, image.height + strip), "white")
    out.paste(image, (0, strip))
    ImageDraw.Draw(out).text((4 - left, 4 - top), title, font=font, fill=(0, 0, 0))
    return out


def grid(images: list[Image.Image], *, columns: int, cell_width: int, gap: int = 6) -> Image.Image:
    """Images scaled to `cell_width` (keeping their aspect) in rows of `columns`, on a white background."""
    scaled = [im.resize((cell_width, max(1, round(im.height * cell_width / im.width))), Image.BILINEAR)
              for im in images]
    rows = [scaled[i:i + columns] for i in range(0, len(scaled), columns)]
    heights = [max(im.height for im in row) for row in rows]
    out = Image.new("RGB", (columns * (cell_width + gap) + gap, sum(heights) + gap * (len(rows) + 1)), "white")
    y = gap
    for row, h in zip(rows, heights):
        for c, im in enumerate(row):
            out.paste(im, (gap + c * (cell_width + gap), y))
        y += h + gap
    return out
