"""Hugging Face datasets -> raw records (as `coco.read_coco`): a Hub id (through `datasets.load_dataset` and its
cache), a local dataset repo folder (parquet / arrow files, what `hf download --repo-type dataset` leaves) or a
`save_to_disk` folder.

Schema (transformers' object-detection example, cppe-5): `image` (an `Image` feature: embedded bytes or a path),
optional `image_id`, `width`, `height`, and `objects = {bbox (xywh_abs), category or categories (ClassLabel),
optional id, area, iscrowd}`. Splits: `train`, and `validation` (or `val`, `valid`, `test`).

Embedded images are written once, byte for byte (never re-encoded), into a folder beside the Arrow cache named by
the source's fingerprint; the table then points at those files like any other format, so decoding gives the
pixels of the original file and training reads them at the speed of files.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from recipe.core.errors import DataError
from recipe.data.formats import DatasetOptions, Format, Split, hash_stats

VALIDATION_NAMES = ("validation", "val", "valid", "test")
CATEGORY_KEYS = ("category", "categories")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DATA_SUFFIXES = (".parquet", ".arrow")


def _save_to_disk_folder(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))


def _data_files(path: str) -> list[str]:
    return sorted(str(p) for p in Path(path).rglob("*") if p.suffix in _DATA_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(path).parts))


def detect(path_or_id: str) -> bool:
    if os.path.isdir(path_or_id):
        return _save_to_disk_folder(path_or_id) or bool(_data_files(path_or_id))
    return not os.path.exists(path_or_id) and bool(_HUB_ID.match(path_or_id))


def load(path_or_id: str, offline: bool, cache_dir: str | None = None):
    """-> (DatasetDict, fingerprint of the source). Errors are one line (DataError). `cache_dir`: where `datasets`
    keeps its Arrow copy of a parquet folder (default: the datasets cache)."""
    import datasets

    try:
        if os.path.isdir(path_or_id) and _save_to_disk_folder(path_or_id):
            loaded = datasets.load_from_disk(path_or_id)
            fp = hash_stats(sorted(str(p) for p in Path(path_or_id).rglob("*") if p.is_file()), "save_to_disk")
        elif os.path.isdir(path_or_id):
            loaded = datasets.load_dataset(path_or_id, cache_dir=os.path.join(cache_dir, "hf_datasets")
                                           if cache_dir else None)
            fp = hash_stats(_data_files(path_or_id), "folder")
        else:
            loaded = _load_hub(path_or_id, offline)
            fp = "hub|" + path_or_id + "|" + "|".join(f"{k}:{v._fingerprint}" for k, v in sorted(loaded.items()))
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many types; the user needs one line naming the source
        raise DataError(f"{path_or_id}: the Hugging Face dataset cannot be loaded ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    return loaded, fp


def _load_hub(dataset_id: str, offline: bool):
    import datasets
    from huggingface_hub import constants

    if offline or constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE:
        # datasets reads the offline switch once, at import; --offline must hold without HF_HUB_OFFLINE set.
        datasets.config.HF_HUB_OFFLINE = True
        try:
            return datasets.load_dataset(dataset_id)
        except (FileNotFoundError, ConnectionError, ValueError) as e:
            raise DataError(f"--dataset {dataset_id}: not a path here, not in the local datasets cache "
                            f"({datasets.config.HF_DATASETS_CACHE}), and offline mode is on; load it once online, "
                            f"or pass a local folder (save_to_disk or parquet files) "
                            f"[{type(e).__name__}]") from None
    return datasets.load_dataset(dataset_id)


def split_names(dataset_dict, source: str) -> dict[str, str]:
    """{"train": its name, "validation": its name (if any)}."""
    if "train" not in dataset_dict:
        raise DataError(f"{source}: no 'train' split (splits: {sorted(dataset_dict)})")
    val = next((n for n in VALIDATION_NAMES if n in dataset_dict), None)
    return {"train": "train", **({"validation": val} if val else {})}


def check_schema(ds, source: str) -> str:
    """-> the category key of `objects`; a DataError naming the columns otherwise."""
    import datasets

    columns = sorted(ds.column_names)
    if "objects" not in ds.features:
        raise DataError(f"{source}: no 'objects' column (columns: {columns}); the object-detection schema is "
                        "image + objects = {bbox (xywh_abs), category (ClassLabel)}")
    if "image" not in ds.features or not isinstance(ds.features["image"], datasets.Image):
        raise DataError(f"{source}: no 'image' column of the Image feature (columns: {columns})")
    objects = ds.features["objects"]
    listed = isinstance(objects, (datasets.List, datasets.LargeList))  # a list of objects, not an object of lists
    fields = objects.feature if listed else objects
    keys = sorted(fields) if isinstance(fields, dict) else []
    key = next((k for k in CATEGORY_KEYS if k in keys), None)
    bbox = fields.get("bbox") if isinstance(fields, dict) else None
    if key is None or not _is_box(bbox if listed else getattr(bbox, "feature", None)):
        raise DataError(f"{source}: objects has {keys}; expected bbox (lists of 4 numbers, COCO xywh in pixels) and "
                        "category or categories (a ClassLabel)")
    return key


def _is_box(feature) -> bool:
    import datasets

    return isinstance(feature, (datasets.List, datasets.LargeList)) and feature.length in (4, -1) and \
        isinstance(feature.feature, datasets.Value)


def class_names(ds, key: str, source: str, given) -> list[str]:
    import datasets

    feature = ds.features["objects"]
    listed = isinstance(feature, (datasets.List, datasets.LargeList))
    inner = feature.feature[key] if listed else getattr(feature[key], "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    if given:
        return list(given)
    raise DataError(f"{source}: objects.{key} holds plain integers, not a ClassLabel; pass the class names in "
                    "order (--class_names a b c)")


class HfDataset:
    def __init__(self, path_or_id: str, options: DatasetOptions):
        self.source = path_or_id
        self.options = options
        self.data, fp = load(path_or_id, options.offline, options.cache_dir)
        self.splits = split_names(self.data, path_or_id)
        self.fingerprint = f"{fp}|{options.key()}"
        import hashlib

        digest = hashlib.blake2b(self.fingerprint.encode(), digest_size=12).hexdigest()
        from recipe.data.builder import default_cache_dir

        self.image_dir = Path(options.cache_dir or default_cache_dir()) / "recipe_images" / digest

    def read(self, split: str):
        import datasets

        name = self.splits[split]
        source = f"{self.source} [{name}]"
        ds = self.data[name]
        key = check_schema(ds, source)
        names = class_names(ds, key, source, self.options.class_names)
        categories = [{"id": i, "name": n} for i, n in enumerate(names)]
        keep = [c for c in ("image_id", "image", "width", "height", "objects") if c in ds.column_names]
        ds = ds.select_columns(keep).cast_column("image", datasets.Image(decode=False))
        folder = self.image_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        counts = {"images_written_from_bytes": 0}
        records = [self._record(row, i, key, len(names), source, folder, counts) for i, row in enumerate(ds)]
        _unique_ids(records, source)
        return sorted(records, key=lambda r: r["image_id"]), categories, counts

    def _record(self, row, i: int, key: str, num_classes: int, source: str, folder: Path, counts: dict) -> dict:
        image_id = row.get("image_id", i + 1)
        what = f"{source} row {i} (image_id {image_id})"
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise DataError(f"{what}: image_id must be an integer")
        path = self._image_file(row["image"], image_id, what, folder, counts)
        objs = row["objects"]
        if isinstance(objs, list):  # a list of objects: turn into an object of lists
            objs = {k: [o.get(k) for o in objs] for k in (objs[0] if objs else {})}
        bboxes, cats = objs.get("bbox") or [], objs.get(key) or []
        if len(bboxes) != len(cats):
            raise DataError(f"{what}: objects has {len(bboxes)} bbox but {len(cats)} {key}; one of each per object")
        anns = []
        for k, (bbox, cat) in enumerate(zip(bboxes, cats)):
            where = f"{what} object {k}"
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
                raise DataError(f"{where}: bbox must be 4 numbers (x, y, w, h in pixels), got {bbox!r:.80}")
            if not (isinstance(cat, int) and 0 <= cat < num_classes):
                raise DataError(f"{where}: {key} {cat!r} is not a class index 0..{num_classes - 1}")
            bbox = [float(v) for v in bbox]
            area = _item(objs, "area", k)
            anns.append({"id": _item(objs, "id", k), "category_id": cat, "bbox": bbox,
                         "area": float(area) if area is not None else max(bbox[2], 0.0) * max(bbox[3], 0.0),
                         "iscrowd": int(_item(objs, "iscrowd", k) or 0), "where": where})
        return {"image_id": image_id, "orig_image_id": str(image_id), "image_path": path,
                "width": int(row.get("width") or 0), "height": int(row.get("height") or 0), "annotations": anns}

    def _image_file(self, image: dict, image_id: int, what: str, folder: Path, counts: dict) -> str:
        data, path = (image or {}).get("bytes"), (image or {}).get("path")
        if data:
            suffix = Path(path).suffix.lower() if path and Path(path).suffix else _suffix(data)
            out = folder / f"{image_id}{suffix}"
            if not (out.is_file() and out.stat().st_size == len(data)):
                tmp = out.with_suffix(f".tmp{os.getpid()}")
                tmp.write_bytes(data)  # the bytes as stored: never decoded and re-encoded
                os.replace(tmp, out)
                counts["images_written_from_bytes"] += 1
            return str(out)
        if path:
            full = path if os.path.isabs(path) or not os.path.isdir(self.source) else os.path.join(self.source, path)
            return full
        raise DataError(f"{what}: the image has neither bytes nor a path")


def _item(objs: dict, key: str, k: int):
    values = objs.get(key)
    return values[k] if values is not None and k < len(values) else None


def _unique_ids(records: list[dict], source: str) -> None:
    seen = set()
    for rec in records:
        if rec["image_id"] in seen:
            raise DataError(f"{source}: image_id {rec['image_id']} appears twice; image ids must be unique")
        seen.add(rec["image_id"])
    ann_ids = [a["id"] for r in records for a in r["annotations"]]
    if len(set(ann_ids)) != len(ann_ids) or not all(isinstance(a, int) for a in ann_ids):
        next_id = 1
        for r in records:  # repeated or missing objects.id: number them in order (COCOeval matches by id)
            for a in r["annotations"]:
                a["id"] = next_id
                next_id += 1


def _suffix(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"\x89PNG"):
        return ".png"
    return ".img"  # the image reader looks at the bytes, not the name


def open_hf(path_or_id: str, options: DatasetOptions) -> dict[str, Split]:
    ds = HfDataset(path_or_id, options)
    return {split: Split(f"{path_or_id} [{name}]", str(ds.image_dir), f"{ds.fingerprint}-{split}",
                         functools.partial(ds.read, split), "fix width/height in the dataset")
            for split, name in ds.splits.items()}


FORMAT = Format("hf", detect, open_hf, "a Hugging Face dataset: a Hub id (owner/name), a folder of parquet/arrow "
                "files, or a save_to_disk folder")
