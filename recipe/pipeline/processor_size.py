"""The size (h, w) a DETR-family image processor of transformers 5 resizes an image to, for each form of its `size`.

evaluate.py and predict.py resize with cv2 (`augment.eval_augmentation_for`) but must give each image the size
the model folder's own image processor would (its preprocessor_config.json), rounding included: a model trained at
320 and evaluated at another size scores far lower, with no error. The rules are those of the processors the
families use (`DetrImageProcessor.resize` and its copies in Deformable/Conditional DETR, RT-DETR, RF-DETR; YOLOS
with its own rounding): transformers 5.x `image_transforms.get_size_with_aspect_ratio`,
`image_utils.get_image_size_for_max_height_width` and
`models/yolos/image_processing_yolos.get_size_with_aspect_ratio_yolos`. tests/test_processor_size.py compares
every form with the installed processors.
"""

from __future__ import annotations

from dataclasses import dataclass

from recipe.core.errors import ConfigError

# The `size` forms these processors resize to (any other key set is an error there too).
SIZE_FORMS = (("shortest_edge", "longest_edge"), ("max_height", "max_width"), ("height", "width"))
RULES = ("detr", "yolos")  # YOLOS floors `shortest_edge` + `longest_edge` sizes to multiples of 16


def size_dict(size) -> dict[str, int]:
    """An image processor's `size` (a dict, or transformers' SizeDict) -> its set keys as a plain dict."""
    return {k: v for k, v in dict(size).items() if v is not None}


def canvas_of(processor) -> tuple[int, int] | None:
    """(h, w) every image is padded to by the processor (`do_pad` with `pad_size`), else None (the batch's size).

    A mask-reading model's outputs change with the canvas (its convolutions see the padding), so evaluation pads
    as the processor does: transformers' run_object_detection.py trains with `pad_size`."""
    pad = getattr(processor, "pad_size", None)
    if not getattr(processor, "do_pad", False) or pad is None:
        return None
    pad = size_dict(pad)
    return (int(pad["height"]), int(pad["width"])) if {"height", "width"} <= set(pad) else None


def rule_of(processor) -> str:
    """The resize rule of an image processor object: "yolos" for YOLOS' processors, else "detr"."""
    return "yolos" if type(processor).__name__.startswith("Yolos") else "detr"


@dataclass(frozen=True)
class ProcessorResize:
    """(height, width) of an image -> (h, w) the image processor resizes it to, before any padding.

    A plain object (not a closure) so that it reaches DataLoader workers started with spawn. Build it with
    `processor_resize`, which checks the form."""

    form: tuple[str, str]
    values: tuple[int, int]
    rule: str = "detr"

    def __call__(self, height: int, width: int) -> tuple[int, int]:
        a, b = self.values
        if self.form == ("height", "width"):
            return a, b
        if self.form == ("max_height", "max_width"):
            return size_for_max_height_width(height, width, a, b)
        if self.rule == "yolos":
            return size_with_aspect_ratio_yolos(height, width, a, b)
        return size_with_aspect_ratio(height, width, a, b)


def processor_resize(size, *, rule: str = "detr", source: str = "the image processor") -> ProcessorResize:
    """The resize `size` states, or a ConfigError naming `source` (the folder or file) and the size."""
    values = size_dict(size)
    if rule not in RULES:
        raise ConfigError(f"{source}: resize rule {rule!r}: choose one of {RULES}")
    for form in SIZE_FORMS:
        if set(values) == set(form) and all(isinstance(values[k], int) and values[k] > 0 for k in form):
            return ProcessorResize(form, (values[form[0]], values[form[1]]), rule)
    forms = " or ".join("{" + ", ".join(form) + "}" for form in SIZE_FORMS)
    raise ConfigError(f"{source}: image processor size {values} is not a form DETR-family image processors resize to "
                      f"(they reject it too); set size to {forms} with positive integers")


def size_with_aspect_ratio(height: int, width: int, shortest_edge: int, longest_edge: int) -> tuple[int, int]:
    """`{"shortest_edge", "longest_edge"}`: the shortest edge to `shortest_edge` unless the longest would pass
    `longest_edge`, then the longest to it; the other edge truncated (int), as transformers'
    `get_size_with_aspect_ratio` (itself facebookresearch/detr datasets/transforms.py `get_size_with_aspect_ratio`)."""
    size, raw_size = shortest_edge, None
    short, long = float(min(height, width)), float(max(height, width))
    if long / short * size > longest_edge:
        raw_size = longest_edge * short / long
        size = int(round(raw_size))
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    scale = raw_size if raw_size is not None else size
    if width < height:
        return int(scale * height / width), size
    return size, int(scale * width / height)


def size_with_aspect_ratio_yolos(height: int, width: int, shortest_edge: int, longest_edge: int) -> tuple[int, int]:
    """YOLOS' variant (`get_size_with_aspect_ratio_yolos`): the portrait branch comes before the unchanged-size
    check, and both edges are floored to a multiple of 16."""
    size, raw_size = shortest_edge, None
    short, long = float(min(height, width)), float(max(height, width))
    if long / short * size > longest_edge:
        raw_size = longest_edge * short / long
        size = int(round(raw_size))
    scale = raw_size if raw_size is not None else size
    if width < height:
        oh, ow = int(scale * height / width), size
    elif (height <= width and height == size) or (width <= height and width == size):
        oh, ow = height, width
    else:
        oh, ow = size, int(scale * width / height)
    return oh - oh % 16, ow - ow % 16


def size_for_max_height_width(height: int, width: int, max_height: int, max_width: int) -> tuple[int, int]:
    """`{"max_height", "max_width"}`: the largest size within max_height x max_width with the image's aspect ratio
    (upscaling too), both edges truncated, as transformers' `get_image_size_for_max_height_width`."""
    scale = min(max_height / height, max_width / width)
    return int(height * scale), int(width * scale)
