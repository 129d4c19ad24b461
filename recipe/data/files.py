"""An annotation file + image folder (`--train-ann/--train-img`, or a COCO json / BDD100K frame list named by
`--dataset`) as a `formats.Split`; the `coco` and `bdd100k` formats of the registry."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from recipe.data.bdd100k import read_bdd100k
from recipe.data.choices import ANNOTATION_FORMATS
from recipe.data.coco import load_json, read_coco
from recipe.data.formats import Format, Split
from recipe.core.errors import DataError

# Bump when the way a file is read changes, so old caches are not reused.
READ_VERSION = "1"

FORMATS = ANNOTATION_FORMATS  # what --annotation_format names (an annotation file + image folder)


def detect_format(annotation_file) -> str:
    """A COCO file is a JSON object, a BDD100K/Scalabel frame list a JSON array: peek, don't parse."""
    if not Path(annotation_file).is_file():
        raise DataError(f"{annotation_file}: annotation file not found")
    with open(annotation_file, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "bdd100k" if head.startswith(b"[") else "coco"


def file_split(annotation_file, image_root, annotation_format="auto", box_convention="inclusive",
               bdd_image_size=(1280, 720)) -> tuple[str, Split]:
    """An annotation file + image folder (--train-ann/--train-img) as a (format name, Split)."""
    if annotation_format not in FORMATS:
        raise DataError(f"annotation_format {annotation_format!r} is not one of {FORMATS}")
    if annotation_format == "auto":
        annotation_format = detect_format(annotation_file)
    if annotation_format == "bdd100k":
        read = functools.partial(read_bdd100k, annotation_file, image_root, box_convention, check_images=False,
                                 image_size=tuple(bdd_image_size))
        advice = "set bdd_image_size (--bdd_image_size W H) to the frames' size"
    else:
        read = functools.partial(read_coco, annotation_file, image_root, check_images=False)
        advice = "fix width/height in the annotation file"
    fp = fingerprint_source(annotation_file, image_root, annotation_format, box_convention, tuple(bdd_image_size))
    return annotation_format, Split(str(annotation_file), str(image_root), fp, read, advice)


def fingerprint_source(annotation_file, image_root, *options) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(annotation_file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    h.update(f"|{Path(image_root).resolve()}|{options}|{READ_VERSION}".encode())
    return h.hexdigest()


# ---------------------------------------------------------------- as a whole dataset (--dataset)

# Dataset folders of COCO files: <root>/<split>/annotations.json (the demo data) or the COCO 2017 layout
# <root>/annotations/instances_<split>.json with images in <root>/<split>/.
_SPLIT_NAMES = {"train": ("train", "train2017", "train2014"), "validation": ("val", "validation", "val2017", "val2014")}


def _is_json_object_file(path: str) -> bool:
    if not (path.endswith(".json") and os.path.isfile(path)):
        return False
    with open(path, "rb") as f:
        return f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def _folder_splits(path: str) -> dict[str, tuple[str, str]]:
    """{split: (annotation file, image folder)} of a COCO dataset folder; {} when it is not one."""
    found = {}
    for split, names in _SPLIT_NAMES.items():
        for name in names:
            per_split = os.path.join(path, name, "annotations.json")
            coco2017 = os.path.join(path, "annotations", f"instances_{name}.json")
            if os.path.isfile(per_split):
                images = os.path.join(path, name, "images")
                found[split] = (per_split, images if os.path.isdir(images) else os.path.join(path, name))
                break
            if os.path.isfile(coco2017):
                found[split] = (coco2017, os.path.join(path, name))
                break
    return found if "train" in found else {}


def image_root_beside(annotation_file: str) -> str:
    """The image folder of a COCO file named alone: its folder's `images/` when the first image is there, else
    its folder (file names relative to the file)."""
    folder = os.path.dirname(os.path.abspath(annotation_file))
    images = os.path.join(folder, "images")
    if os.path.isdir(images):
        data = load_json(annotation_file)
        first = (data.get("images") or [{}])[0] if isinstance(data, dict) else {}
        name = first.get("file_name") if isinstance(first, dict) else None
        if isinstance(name, str) and os.path.isfile(os.path.join(images, name)):
            return images
    return folder


def detect_coco(path: str) -> bool:
    return _is_json_object_file(path) or (os.path.isdir(path) and bool(_folder_splits(path)))


def open_coco(path: str, options) -> dict:
    pairs = _folder_splits(path) if os.path.isdir(path) else {"train": (path, image_root_beside(path))}
    return {split: file_split(ann, images, "coco")[1] for split, (ann, images) in pairs.items()}


COCO = Format("coco", detect_coco, open_coco, "a COCO json beside its images, or a folder of "
              "{train,val}/annotations.json or annotations/instances_{train,val}*.json")


# ---------------------------------------------------------------- as a whole dataset (--dataset)

def detect_bdd100k(path: str) -> bool:
    """A BDD100K frame list (a JSON array) named alone; its frame names are relative to its folder."""
    if not (path.endswith(".json") and os.path.isfile(path)):
        return False
    with open(path, "rb") as f:
        return f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def open_bdd100k(path: str, options) -> dict:
    folder = os.path.dirname(os.path.abspath(path))
    return {"train": file_split(path, folder, "bdd100k", options.box_convention, options.bdd_image_size)[1]}


BDD100K = Format("bdd100k", detect_bdd100k, open_bdd100k, "a BDD100K frame list (JSON array) beside its frames")

REGISTERED = (COCO, BDD100K)  # formats.registry() reads these
