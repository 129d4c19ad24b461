"""Pascal VOC roots -> raw records (as `coco.read_coco`): `Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/`.

Corners are 1-based and inclusive (the VOC devkit's convention: a box from pixel 1 to pixel 640 covers the
640-pixel row), so the `xywh_abs` box is x = xmin - 1, y = ymin - 1, w = xmax - xmin + 1, h = ymax - ymin + 1,
exactly (a box with xmin == xmax is one pixel wide; such boxes are counted). `difficult` objects become ignore
regions (`iscrowd` 1: in the evaluation ground truth, out of the loss), as the VOC devkit ignores them.

Splits: `ImageSets/Main/train.txt` and `val.txt` (one image name per line); without `train.txt`, every XML is
the training split. Class order: the names given (`class_names`), else the sorted names of every object in
every XML (both splits agree); ids 1..N in that order, saved as the model's `id2label` / `category_ids`.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from recipe.core.errors import DataError
from recipe.data.coco import resolve_image_path
from recipe.data.formats import DatasetOptions, Format, Split, category_list, hash_files, number_images

SPLIT_FILES = {"train": "train.txt", "validation": "val.txt"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def detect(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "Annotations"))


def parse_xml(path: Path) -> dict:
    """One annotation file -> {file_name, width, height, objects: [{name, corners (xyxy, 1-based inclusive),
    difficult, where}]}. Errors name the file and the object."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: not valid XML ({e}); fix or remove the file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from None
    size = root.find("size")
    width, height = (_int(size, "width", path), _int(size, "height", path)) if size is not None else (0, 0)
    objects = []
    for n, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        where = f"{path}: object {n}" + (f" ({name})" if name else "")
        if not name:
            raise DataError(f"{where}: no <name>; every object needs its class name")
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{where}: no <bndbox>; give the box (xmin, ymin, xmax, ymax) or remove the object")
        corners = [_number(box, key, where) for key in ("xmin", "ymin", "xmax", "ymax")]
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise DataError(f"{where}: <difficult> must be 0 or 1, got {difficult!r}")
        objects.append({"name": name, "corners": corners, "difficult": difficult == "1", "where": where})
    return {"file_name": (root.findtext("filename") or "").strip(), "width": width, "height": height,
            "objects": objects}


def _number(parent, key: str, where: str) -> float:
    text = parent.findtext(key)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise DataError(f"{where}: <bndbox><{key}> must be a number, got {text!r}") from None


def _int(parent, key: str, path) -> int:
    text = (parent.findtext(key) or "0").strip()
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: <size><{key}> must be a whole number, got {text!r}") from None
    if value < 0 or not value.is_integer():
        raise DataError(f"{path}: <size><{key}> must be a whole number, got {text!r}")
    return int(value)


def voc_to_xywh(corners: list[float]) -> list[float]:
    """1-based inclusive `xyxy` corners -> `xywh_abs`."""
    xmin, ymin, xmax, ymax = corners
    return [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]


class VocRoot:
    """A VOC root, its split lists and its XMLs (parsed once for both splits)."""

    def __init__(self, root: str, options: DatasetOptions):
        self.root = Path(root)
        self.options = options
        self.annotations = self.root / "Annotations"
        self.images = self.root / "JPEGImages"
        # Strings, not Paths: sorting 100k Path objects costs seconds on every start.
        self.xmls = sorted(e.path for e in os.scandir(self.annotations) if e.name.lower().endswith(".xml"))
        if not self.xmls:
            raise DataError(f"{self.annotations}: no .xml files; a VOC root holds Annotations/*.xml")
        if not self.images.is_dir():
            raise DataError(f"{self.images}: image folder not found; a VOC root holds JPEGImages/")
        lists = self.root / "ImageSets" / "Main"
        self.split_files = {s: lists / f for s, f in SPLIT_FILES.items() if (lists / f).is_file()}
        if "train" not in self.split_files:
            self.split_files.pop("validation", None)  # a val list alone: every XML trains, nothing left to check
        self.fingerprint = hash_files([*self.split_files.values(), *self.xmls], "voc", options.key())
        self._parsed: dict | None = None

    def names(self, split: str) -> list[tuple[str, str]]:
        """[(image name, where)] of a split, in list order; every XML for a root without lists."""
        if split not in self.split_files:
            return [(_stem(p), p) for p in self.xmls]
        known = {_stem(p) for p in self.xmls}
        out = []
        path = self.split_files[split]
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            name = line.split()[0] if line.split() else ""
            if not name:
                continue
            if name not in known:
                raise DataError(f"{path}:{n}: image {name!r} has no {self.annotations / (name + '.xml')}; "
                                "fix the list or add the annotation file")
            out.append((name, f"{path}:{n}"))
        return out

    def parsed(self) -> dict:
        if self._parsed is None:
            self._parsed = {_stem(p): parse_xml(p) for p in self.xmls}
        return self._parsed

    def categories(self) -> list[dict]:
        if self.options.class_names:
            return category_list(self.options.class_names, 1)
        return category_list(sorted({o["name"] for x in self.parsed().values() for o in x["objects"]}), 1)

    def read(self, split: str):
        categories = self.categories()
        cat_id = {c["name"]: c["id"] for c in categories}
        names = self.names(split)
        ids = number_images([n for n, _ in names])
        counts = {"boxes_difficult": 0, "boxes_one_pixel_wide": 0}
        records, root, next_id = [], os.path.realpath(self.images), 1
        for name, _where in names:
            xml = self.parsed()[name]
            path = self._image_path(name, xml["file_name"], root)
            anns = []
            for obj in xml["objects"]:
                if obj["name"] not in cat_id:
                    raise DataError(f"{obj['where']}: class {obj['name']!r} is not in class_names "
                                    f"{list(cat_id)}; add it or remove the object")
                bbox = voc_to_xywh(obj["corners"])
                counts["boxes_difficult"] += obj["difficult"]
                counts["boxes_one_pixel_wide"] += bbox[2] == 1 or bbox[3] == 1
                anns.append({"id": next_id, "category_id": cat_id[obj["name"]], "bbox": bbox,
                             "area": max(bbox[2], 0.0) * max(bbox[3], 0.0), "iscrowd": int(obj["difficult"]),
                             "where": obj["where"]})
                next_id += 1
            # A size the XML leaves out (0) is read from the image by the builder's image check.
            records.append({"image_id": ids[name], "orig_image_id": name, "image_path": path,
                            "width": xml["width"], "height": xml["height"], "annotations": anns})
        return sorted(records, key=lambda r: r["image_id"]), categories, counts

    def _image_path(self, name: str, file_name: str, root: str) -> str:
        """JPEGImages/<filename> as the XML says (the image check reports it when missing), else <name> with the
        first usual suffix that exists."""
        if file_name and Path(file_name).suffix:
            return resolve_image_path(os.path.basename(file_name), self.images, f"{self.annotations}/{name}.xml",
                                      root)[0]
        for suffix in IMAGE_SUFFIXES:
            path = os.path.join(root, name + suffix)
            if os.path.exists(path):
                return path
        return os.path.join(root, name + ".jpg")


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def open_voc(path: str, options: DatasetOptions) -> dict[str, Split]:
    voc = VocRoot(path, options)
    splits = voc.split_files or {"train": voc.annotations}
    return {split: Split(str(source), str(voc.images), f"{voc.fingerprint}-{split}",
                         functools.partial(voc.read, split), "fix <size> in the XML")
            for split, source in splits.items()}


FORMAT = Format("voc", detect, open_voc, "a Pascal VOC root with Annotations/*.xml, JPEGImages/, ImageSets/Main/")
