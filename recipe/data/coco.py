"""COCO JSON reader: annotation file + image root -> raw records (boxes untouched, `xywh_abs`).

A raw record is ``{image_id: int, orig_image_id: str, image_path: str, width, height,
annotations: [{id, category_id, bbox (xywh_abs), area, iscrowd}]}``. Editing boxes is
`sanitize.py`'s job; this module checks that the file is well-formed and finds the images.
`parse_coco` (no file system) is shared with the evaluator, so training and scoring read a COCO
file by the same rules.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from recipe.core.errors import DataError


def load_json(path: str | os.PathLike) -> object:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an annotation file; pass the JSON file inside it")
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); the file may be truncated") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file; is it really the annotation JSON?") from None


def map_image_ids(ids: list) -> dict:
    """Original image id -> int id. Integer ids are kept; otherwise ids are numbered 1..N in sorted order.

    The DETR-family image processors cast `image_id` to int64, so string ids (file stems, UUIDs) need a
    stable integer stand-in; the original is kept for output.
    """
    if all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return {i: i for i in ids}
    return {orig: n for n, orig in enumerate(sorted(ids, key=str), start=1)}


# ---------------------------------------------------------------- one path rule for every reader

def _is_plain_name(name: str) -> bool:
    return "/" not in name and "\\" not in name and name not in ("", ".", "..")


def check_relative_name(name: str, what: str) -> None:
    """Lexical half of the path rule, for readers without an image folder (BDD frame names, conversion):
    a name must be relative and must not climb out with `..`."""
    normal = os.path.normpath(name.replace("\\", "/"))
    if os.path.isabs(name) or normal == ".." or normal.startswith("../"):
        raise DataError(f"{what}: name {name!r} is not a path inside the image folder (absolute or with '..'); "
                        "use the file name relative to the image folder")


def resolve_image_path(file_name: str, image_root: str | os.PathLike, what: str,
                       root: str | None = None) -> tuple[str, bool]:
    """The path rule shared by COCO, BDD100K and evaluation. Returns (path, fell_back).

    The RESOLVED path (symlinks followed) must lie under the resolved image folder, whether `file_name`
    is relative or absolute. An absolute name that does not exist here (an export made on another
    machine) is looked up by its base name under the folder instead (`fell_back`). `root`: the folder
    already resolved, so callers that loop over many names resolve it once.
    """
    if not isinstance(file_name, str) or not file_name:
        raise DataError(f"{what}: file_name must be a non-empty string, got {file_name!r}")
    root = root or os.path.realpath(image_root)
    fell_back = os.path.isabs(file_name) and not os.path.exists(file_name)
    if fell_back:  # Windows exports carry backslashes; take the last component either way.
        file_name = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    path = os.path.join(root, file_name)
    # A plain name under a resolved root can only leave it through a symlink: lstat, not realpath (~40 us).
    if _is_plain_name(file_name) and not os.path.islink(path):
        return path, fell_back
    real = os.path.realpath(path)
    if not (real == root or real.startswith(root.rstrip(os.sep) + os.sep)):
        raise DataError(f"{what}: file_name {file_name!r} resolves to {real}, outside the image root {image_root} "
                        "(symlinks are followed); fix the file_name or pass the folder that holds the images")
    return real, fell_back


# ---------------------------------------------------------------- field checks shared with the evaluator

def is_finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_id(v) -> bool:
    """Image ids may be ints or strings (many exports use file stems)."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v != "")


def as_size(value, key: str, what: str) -> int | None:
    """A positive integer width/height (640, 640.0 or "640"); None when absent or 0 (read from the image)."""
    if value is None or value == 0:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if is_finite_number(value) and value > 0 and float(value).is_integer():
        return int(value)
    raise DataError(f"{what}: {key} must be a positive integer, got {value!r}; fix it or remove the key")


def as_iscrowd(value, what: str) -> int:
    """0 or 1. Strings are read for their value ("0" is NOT crowd: bool("0") would say it is)."""
    if value is None:
        return 0
    if isinstance(value, str):
        value = {"0": 0, "1": 1, "false": 0, "true": 1}.get(value.strip().lower(), value)
    if isinstance(value, (bool, int, float)) and value in (0, 1):
        return int(value)
    raise DataError(f"{what}: iscrowd must be 0 or 1, got {value!r}")


def check_bbox(bbox, what: str) -> list[float]:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(map(is_finite_number, bbox)):
        raise DataError(f"{what}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r:.120}")
    return [float(v) for v in bbox]


def _list_field(data: dict, key: str, source) -> list:
    value = data.get(key, [] if key == "annotations" else None)
    if not isinstance(value, list):
        hint = "; use [] for a file without annotations" if key == "annotations" else ""
        raise DataError(f"{source}: '{key}' must be a list, got {json.dumps(value)[:40]}{hint}")
    return value


# ---------------------------------------------------------------- parsing (no file system)

def parse_categories(data: dict, source) -> list[dict]:
    """[{id, name} + supercategory where the file gives one (a string)] in file order; ids are ints, names unique
    non-empty strings. The supercategory is kept for COCO's error analysis ("similar class" errors)."""
    categories, names = [], {}
    for n, c in enumerate(_list_field(data, "categories", source)):
        what = f"{source}: categories[{n}]"
        if not isinstance(c, dict) or not (isinstance(c.get("id"), int) and not isinstance(c.get("id"), bool)):
            raise DataError(f"{what}: each category needs an integer 'id', got {c!r:.80}")
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            raise DataError(f"{what} (id {c['id']}): each category needs a non-empty 'name'")
        if c["name"] in names:
            raise DataError(f"{what}: category name {c['name']!r} is used by ids {names[c['name']]} and {c['id']}; "
                            "class names must be unique (merge the categories or rename one)")
        names[c["name"]] = c["id"]
        categories.append({"id": c["id"], "name": c["name"],
                           **({"supercategory": c["supercategory"]} if isinstance(c.get("supercategory"), str) else {})})
    if len({c["id"] for c in categories}) != len(categories):
        raise DataError(f"{source}: duplicate category ids in 'categories'")
    if not categories:
        raise DataError(f"{source}: 'categories' is empty; list the classes as [{{id, name}}]")
    return categories


def parse_images(data: dict, source) -> list[dict]:
    """[{id, file_name, width or None, height or None}] in file order; ids unique ints or strings."""
    images, seen = [], set()
    for n, img in enumerate(_list_field(data, "images", source)):
        if not isinstance(img, dict) or not is_id(img.get("id")):
            raise DataError(f"{source}: images[{n}]: each image needs an 'id' (integer or string), got {img!r:.80}")
        what = f"{source}: image id {img['id']!r}"
        if img["id"] in seen:
            raise DataError(f"{what}: duplicate image id in 'images'")
        seen.add(img["id"])
        images.append({"id": img["id"], "file_name": img.get("file_name"),
                       "width": as_size(img.get("width"), "width", what),
                       "height": as_size(img.get("height"), "height", what)})
    return images


def parse_annotations(data: dict, source, image_ids: set, cat_ids: set, counts: dict) -> list[dict]:
    """Checked annotations {id, image_id (the file's), category_id, bbox `xywh_abs`, area, iscrowd}.

    Annotations without an integer `id` get fresh ids above the file's largest (counted); a repeated id
    is an error, since COCOeval matches by id and silently mis-scores duplicates."""
    anns, seen = [], set()
    for n, ann in enumerate(_list_field(data, "annotations", source)):
        if not isinstance(ann, dict):
            raise DataError(f"{source}: annotations[{n}] is not an object: {ann!r:.80}")
        ann_id = ann.get("id")
        what = f"{source}: annotation id {ann_id!r}" if ann_id is not None else f"{source}: annotations[{n}]"
        if ann_id is not None:
            if not is_id(ann_id):
                raise DataError(f"{what}: annotation id must be an integer or a string")
            if ann_id in seen:
                raise DataError(f"{what}: duplicate annotation id; annotation ids must be unique")
            seen.add(ann_id)
        category_id = ann.get("category_id")
        if not (is_id(category_id) and category_id in cat_ids):
            raise DataError(f"{what}: category_id {category_id!r} is not in 'categories' (known ids: {sorted(cat_ids)})")
        if not (is_id(ann.get("image_id")) and ann["image_id"] in image_ids):
            raise DataError(f"{what}: image_id {ann.get('image_id')!r} is not in 'images'")
        bbox = check_bbox(ann.get("bbox"), what)
        area = ann.get("area")
        if area is None:
            area = max(bbox[2], 0.0) * max(bbox[3], 0.0)
            counts["areas_computed"] = counts.get("areas_computed", 0) + 1
        elif not (is_finite_number(area) and area >= 0):
            raise DataError(f"{what}: area must be a finite number >= 0, got {area!r}; fix it or remove the key")
        anns.append({"id": ann_id, "image_id": ann["image_id"], "category_id": category_id, "bbox": bbox,
                     "area": float(area), "iscrowd": as_iscrowd(ann.get("iscrowd"), what)})
    _assign_annotation_ids(anns, counts)
    return anns


def _assign_annotation_ids(anns: list[dict], counts: dict) -> None:
    # String ids (some exports) and missing ids: the table and COCOeval need unique ints.
    next_id = max((a["id"] for a in anns if isinstance(a["id"], int) and not isinstance(a["id"], bool)), default=0)
    for a in anns:
        if not (isinstance(a["id"], int) and not isinstance(a["id"], bool)):
            next_id += 1
            a["id"] = next_id
            counts["annotation_ids_assigned"] = counts.get("annotation_ids_assigned", 0) + 1


def parse_coco(data, source) -> tuple[list[dict], list[dict], list[dict], dict]:
    """Check a COCO detection dict. Returns (images, annotations, categories, counts); see parse_*."""
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise DataError(f"{source}: not a COCO detection file (needs 'images' and 'categories')")
    counts: dict = {}
    categories = parse_categories(data, source)
    images = parse_images(data, source)
    anns = parse_annotations(data, source, {i["id"] for i in images}, {c["id"] for c in categories}, counts)
    return images, anns, categories, counts


# ---------------------------------------------------------------- records for the table

def read_coco(annotation_file: str | os.PathLike, image_root: str | os.PathLike,
              check_images: bool = True) -> tuple[list[dict], list[dict], dict]:
    """Read a COCO detection file. Returns (records sorted by image_id, categories in file order, counts).

    Errors (DataError): see `parse_coco`, plus a file_name outside the image folder and, with
    `check_images`, image files that do not exist. Without `check_images`, an image without width/height
    in the file gets 0 x 0 (the builder's image check reads its size); with it, the size is read here.
    """
    annotation_file = Path(annotation_file)
    images, anns, categories, counts = parse_coco(load_json(annotation_file), annotation_file)
    id_map = map_image_ids([img["id"] for img in images])
    counts.update(images=len(images), paths_from_base_name=0,
                  string_image_ids=0 if all(k == v for k, v in id_map.items()) else len(id_map))
    root = os.path.realpath(image_root)
    records, missing = {}, []
    for img in images:
        what = f"{annotation_file}: image id {img['id']!r}"
        path, fell_back = resolve_image_path(img["file_name"], image_root, what, root)
        counts["paths_from_base_name"] += fell_back
        if check_images and not os.path.isfile(path):
            missing.append(path)
            continue
        width, height = img["width"], img["height"]
        if not (width and height):
            width, height = _image_size(path, what) if check_images else (0, 0)
        records[img["id"]] = {"image_id": id_map[img["id"]], "orig_image_id": str(img["id"]), "image_path": path,
                              "width": width, "height": height, "annotations": []}
    if missing:
        raise DataError(f"{annotation_file}: {len(missing)} image file(s) not found under {image_root}, "
                        f"e.g. {missing[0]}; check --train-img/--val-img")
    for ann in anns:
        image_id = ann.pop("image_id")
        records[image_id]["annotations"].append(ann)
    return sorted(records.values(), key=lambda r: r["image_id"]), categories, counts


def _image_size(path: str, what: str) -> tuple[int, int]:
    from recipe.data.images import ImageError, image_size

    try:
        return image_size(path)
    except ImageError as e:
        raise DataError(f"{what}: no width/height in the file and the image cannot be read ({e})") from None
