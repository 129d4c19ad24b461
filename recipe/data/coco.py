"""COCO JSON reader: annotation file + image root -> raw records (boxes untouched, `xywh_abs`).

A raw record is ``{image_id: int, orig_image_id: str, image_path: str, width, height,
annotations: [{id, category_id, bbox (xywh_abs), area, iscrowd}]}``. Editing boxes is
`sanitize.py`'s job; this module only checks that the file is well-formed and finds the images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DataError


def load_json(path: str | os.PathLike) -> object:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def map_image_ids(ids: list) -> dict:
    """Original image id -> int id. Integer ids are kept; otherwise ids are numbered 1..N in sorted order.

    The DETR-family image processors cast `image_id` to int64, so string ids (file stems, UUIDs) need a
    stable integer stand-in; the original is kept for output.
    """
    if all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return {i: i for i in ids}
    return {orig: n for n, orig in enumerate(sorted(ids, key=str), start=1)}


def resolve_image_path(file_name: str, image_root: Path, what: str) -> tuple[Path, bool]:
    """Return (path, fell_back). An absolute `file_name` that does not exist here (an export made on
    another machine) falls back to its base name under `image_root`; a relative one must stay inside it."""
    p = Path(file_name)
    if p.is_absolute():
        if p.exists():
            return p, False
        # Windows exports carry backslashes; take the last component either way.
        return image_root / file_name.replace("\\", "/").rsplit("/", 1)[-1], True
    root = image_root.resolve()
    candidate = (root / p).resolve()
    if not candidate.is_relative_to(root):
        raise DataError(f"{what}: file_name {file_name!r} resolves outside the image root {image_root}; "
                        "fix the file_name or pass the right image folder")
    return candidate, False


def read_coco(annotation_file: str | os.PathLike, image_root: str | os.PathLike,
              check_images: bool = True) -> tuple[list[dict], list[dict], dict]:
    """Read a COCO detection file. Returns (records sorted by image_id, categories in file order, counts).

    Errors (DataError): a category id that is not in `categories`, an annotation whose image is not in
    `images`, duplicate ids, a malformed bbox, an image file that does not exist.
    """
    annotation_file, image_root = Path(annotation_file), Path(image_root)
    data = load_json(annotation_file)
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise DataError(f"{annotation_file}: not a COCO detection file (needs 'images' and 'categories')")
    categories = [{"id": int(c["id"]), "name": str(c["name"])} for c in data["categories"]]
    cat_ids = {c["id"] for c in categories}
    if len(cat_ids) != len(categories):
        raise DataError(f"{annotation_file}: duplicate category ids in 'categories'")

    orig_ids = [img["id"] for img in data["images"]]
    if len(set(map(repr, orig_ids))) != len(orig_ids):
        raise DataError(f"{annotation_file}: duplicate image ids in 'images'")
    id_map = map_image_ids(orig_ids)
    counts = {"images": len(orig_ids), "string_image_ids": 0 if all(k == v for k, v in id_map.items()) else len(id_map),
              "paths_from_base_name": 0}
    records, missing = {}, []
    for img in data["images"]:
        what = f"{annotation_file}: image id {img['id']!r}"
        path, fell_back = resolve_image_path(str(img["file_name"]), image_root, what)
        counts["paths_from_base_name"] += fell_back
        if check_images and not path.is_file():
            missing.append(str(path))
        width, height = img.get("width"), img.get("height")
        if not width or not height:
            width, height = _image_size(path, what)
        records[img["id"]] = {"image_id": id_map[img["id"]], "orig_image_id": str(img["id"]),
                              "image_path": str(path), "width": int(width), "height": int(height),
                              "annotations": []}
    if missing:
        raise DataError(f"{annotation_file}: {len(missing)} image file(s) not found under {image_root}, "
                        f"e.g. {missing[0]}; check --train-img/--val-img")

    seen_ann_ids = set()
    for ann in data.get("annotations", []):
        ann_id = ann.get("id")
        what = f"{annotation_file}: annotation id {ann_id!r}"
        if ann_id in seen_ann_ids:
            raise DataError(f"{what}: duplicate annotation id")
        seen_ann_ids.add(ann_id)
        if ann.get("category_id") not in cat_ids:
            raise DataError(f"{what}: category_id {ann.get('category_id')!r} is not in 'categories' "
                            f"(known ids: {sorted(cat_ids)})")
        if ann.get("image_id") not in records:
            raise DataError(f"{what}: image_id {ann.get('image_id')!r} is not in 'images'")
        bbox = ann.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(
                isinstance(v, (int, float)) and v == v and abs(v) != float("inf") for v in bbox):
            raise DataError(f"{what}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
        w, h = float(bbox[2]), float(bbox[3])
        records[ann["image_id"]]["annotations"].append({
            # Some exports use string or missing annotation ids; the table needs ints.
            "id": ann_id if isinstance(ann_id, int) else len(seen_ann_ids), "category_id": int(ann["category_id"]), "bbox": [float(v) for v in bbox],
            "area": float(ann["area"]) if ann.get("area") is not None else max(w, 0.0) * max(h, 0.0),
            "iscrowd": int(bool(ann.get("iscrowd", 0)))})
    return sorted(records.values(), key=lambda r: r["image_id"]), categories, counts


def _image_size(path: Path, what: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError as e:
        raise DataError(f"{what}: no width/height in the file and the image cannot be read ({e})") from None
