"""The `datasets` builder (today's form of a loading script): annotations -> typed, Arrow-cached table.

datasets >= 4 has no script loading, so the builder is a class in the package, instantiated directly.
The cache key is a hash of the annotation file's bytes, the image root and the options, so loading the
same files again is a cache hit and editing the annotation file invalidates it. The sanitizing report,
the category list and each image's (size, mtime) are kept beside the cache, so a cache hit does not
re-read the annotation file, yet finds an image deleted or changed since (`image_check.py`).

Order of the checks when a table is built: read (file well-formed, paths inside the image folder) ->
image check (every image decoded once, size compared) -> bad images dropped or an error -> sanitize.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow as pa

from recipe.data.coco import DataError
from recipe.data.files import FORMATS, detect_format, file_split  # noqa: F401  (FORMATS, detect_format: re-exported)
from recipe.data.formats import Split
from recipe.data.image_check import (
    IMAGE_CHECKS,
    bad_images_error,
    changed_since,
    describe,
    file_stats,
    find_bad_images,
)
from recipe.data.sanitize import sanitize_records

# Bump when the table's content or schema changes, so old caches are not reused.
SCHEMA_VERSION = "4"  # 3: categories keep their supercategory; 4: built in Arrow batches
MAX_LISTED = 1000  # bad images listed by name in the data report (all are counted)


def features_for(category_names: list[str]) -> datasets.Features:
    return datasets.Features({
        "image_id": datasets.Value("int64"),
        "orig_image_id": datasets.Value("string"),
        "image_path": datasets.Value("string"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "objects": {
            "id": datasets.List(datasets.Value("int64")),
            "bbox": datasets.List(datasets.List(datasets.Value("float64"), length=4)),  # xywh_abs
            "category": datasets.List(datasets.ClassLabel(names=category_names)),
            "area": datasets.List(datasets.Value("float64")),
            "iscrowd": datasets.List(datasets.Value("int8")),
        },
    })


class DetectionConfig(datasets.BuilderConfig):
    def __init__(self, annotation_file: str = "", image_root: str = "", annotation_format: str = "auto",
                 box_convention: str = "inclusive", bdd_image_size: tuple = (1280, 720), fingerprint: str = "",
                 category_names: tuple = (), **kwargs):
        super().__init__(**kwargs)
        self.box_convention = box_convention
        self.bdd_image_size = tuple(bdd_image_size)
        self.annotation_file = annotation_file
        self.image_root = image_root
        self.annotation_format = annotation_format
        self.fingerprint = fingerprint
        self.category_names = tuple(category_names)


class DetectionDatasetBuilder(datasets.ArrowBasedBuilder):
    """One split ("data") per annotation file; records are sanitized before they are written.

    Rows go to Arrow in batches (`pa.Table.from_pydict` with the features' schema): encoding them one example at a
    time (a GeneratorBasedBuilder) took about half of a 100k-image build."""

    BUILDER_CONFIG_CLASS = DetectionConfig
    BATCH = 10000
    # Records already read by `load_detection_dataset` (to avoid parsing the file twice); else None.
    records: list[dict] | None = None
    # Dataset category id -> contiguous label (ClassLabel index); set by `load_detection_dataset`.
    _label: dict | None = None

    def _info(self):
        return datasets.DatasetInfo(features=features_for(list(self.config.category_names)))

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name="data")]

    def _generate_tables(self):
        records = self.records
        if records is None:  # the table is always built by `load_detection_dataset`, which sets them
            raise RuntimeError("DetectionDatasetBuilder.records must be set before download_and_prepare()")
        schema = self.info.features.arrow_schema
        for n, start in enumerate(range(0, len(records), self.BATCH)):
            chunk = records[start:start + self.BATCH]
            columns = {key: [rec[key] for rec in chunk]
                       for key in ("image_id", "orig_image_id", "image_path", "width", "height")}
            columns["objects"] = [{
                "id": [a["id"] for a in rec["annotations"]], "bbox": [a["bbox"] for a in rec["annotations"]],
                "category": [self._label[a["category_id"]] for a in rec["annotations"]],
                "area": [a["area"] for a in rec["annotations"]], "iscrowd": [a["iscrowd"] for a in rec["annotations"]],
            } for rec in chunk]
            yield datasets.builder.Key(0, n), pa.Table.from_pydict(columns, schema=schema)


def read_source(annotation_file, image_root, annotation_format="auto", box_convention="inclusive",
                bdd_image_size=(1280, 720), *, image_check: str = "decode", skip_bad_images: bool = False,
                workers: int | None = None):
    """`read_split` of an annotation file + image folder."""
    _, split = file_split(annotation_file, image_root, annotation_format, box_convention, bdd_image_size)
    return read_split(split, image_check=image_check, skip_bad_images=skip_bad_images, workers=workers)


def read_split(split: Split, *, image_check: str = "decode", skip_bad_images: bool = False,
               workers: int | None = None):
    """Read, check every image, and sanitize one split. Returns (records, categories [{id, name}], report).

    Bad images (missing, empty, not decodable, size unlike the annotations') are an error naming them, or
    with `skip_bad_images` dropped and listed in the report (`bad_images`). A split left with no image is
    an error either way."""
    if image_check not in IMAGE_CHECKS:
        raise DataError(f"image_check {image_check!r} is not one of {IMAGE_CHECKS}")
    records, categories, counts = split.read()
    bad = find_bad_images(records, image_check, workers)
    listed = [describe(records[i]["image_path"], problem, split.image_root) for i, problem in bad.items()]
    if bad and not skip_bad_images:
        advice = split.size_advice if any("annotations say" in p for p in bad.values()) else "replace or remove them"
        raise bad_images_error(split.source, listed, advice=f"{advice}, or set skip_bad_images to drop them")
    kept = [r for i, r in enumerate(records) if i not in bad]
    if not kept:
        dropped = f" ({len(bad)} bad image(s) dropped, e.g. {listed[0]})" if bad else ""
        raise DataError(f"{split.source}: no images to use{dropped}; a split needs at least one image")
    kept, report = sanitize_records(kept, counts)
    report["images_bad_dropped"] = len(bad)
    report["bad_images"] = listed[:MAX_LISTED]
    if "boxes_dropped" in report:
        report["boxes_dropped"] = report["boxes_dropped"][:MAX_LISTED]
    return kept, categories, report


@dataclass
class DetectionData:
    dataset: datasets.Dataset
    categories: list[dict]  # [{id, name, supercategory?}] in the file's order; label i <-> categories[i]
    report: dict
    from_cache: bool


def default_cache_dir() -> str:
    return os.path.join(datasets.config.HF_DATASETS_CACHE, "recipe_detection")


def load_detection_dataset(annotation_file, image_root, annotation_format="auto", cache_dir: str | None = None,
                           subset: int | None = None, box_convention: str = "inclusive",
                           bdd_image_size=(1280, 720), *, image_check: str = "decode",
                           skip_bad_images: bool = False, workers: int | None = None,
                           class_names=None) -> DetectionData:
    """Build (or load from cache) the table for one annotation file. `subset`: first N images by id; `class_names`:
    see `load_split`."""
    if not Path(annotation_file).is_file():
        raise DataError(f"{annotation_file}: annotation file not found")
    if not Path(image_root).is_dir():
        raise DataError(f"{image_root}: image folder not found (for {annotation_file}); check --train-img/--val-img")
    fmt, split = file_split(annotation_file, image_root, annotation_format, box_convention, bdd_image_size)
    return load_split(split, fmt, cache_dir, subset, image_check=image_check, skip_bad_images=skip_bad_images,
                      workers=workers, class_names=class_names)


def load_split(split: Split, format_name: str, cache_dir: str | None = None, subset: int | None = None, *,
               image_check: str = "decode", skip_bad_images: bool = False, workers: int | None = None,
               class_names=None) -> DetectionData:
    """Build (or load from cache) the table of one split of any format (`build_or_reuse`), its categories final:
    the one place they meet `--class_names` (`check_class_names`)."""
    data = build_or_reuse(split, format_name, cache_dir, subset, image_check=image_check,
                          skip_bad_images=skip_bad_images, workers=workers)
    check_class_names(data.categories, class_names, source=split.source)
    return data


def check_class_names(categories: list[dict], class_names, *, source: str) -> None:
    """`--class_names` sets the names of a format without them (VOC, a Hugging Face dataset's plain integers), whose
    categories then are exactly those; a file that names its classes (COCO, BDD100K, YOLO, a ClassLabel) must agree
    with them, names and order, or the classes would be trained and scored under names the user did not mean."""
    names = [c["name"] for c in categories]
    if not class_names or names == list(class_names):
        return
    how = "the same names in another order" if sorted(names) == sorted(class_names) else "other names"
    raise DataError(f"{source}: its categories are {names} but --class_names gives {list(class_names)} ({how}); "
                    "give the file's names in its order, or leave out --class_names")


def build_or_reuse(split: Split, format_name: str, cache_dir: str | None = None, subset: int | None = None, *,
                   image_check: str = "decode", skip_bad_images: bool = False,
                   workers: int | None = None) -> DetectionData:
    """Build (or load from cache) the table of one split of any format. `subset`: first N images by id.

    The cache key is the split's fingerprint (its source's content and the options) with the image checks. See
    `read_split` for the checks. On a cache hit, images whose (size, mtime) changed since the build are checked
    again: a bad one is an error naming it, or with `skip_bad_images` the table is rebuilt without it."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{split.fingerprint}|{image_check}|{skip_bad_images}|{SCHEMA_VERSION}".encode())
    fp = h.hexdigest()
    cache_dir = cache_dir or default_cache_dir()
    meta_path = Path(cache_dir) / "recipe_meta" / f"{fp}.json"
    make = functools.partial(_make_builder, cache_dir, fp, split, format_name)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    table_exists = False
    if meta is not None:
        builder = make(meta["categories"])
        table_exists = bool(builder.info.splits) and "data" in builder.info.splits
        if table_exists:
            ds = builder.as_dataset(split="data")
            if _cached_images_ok(ds, meta, meta_path, (split.source, split.image_root), image_check,
                                 skip_bad_images):
                return _finish(ds, meta, subset, from_cache=True)
    records, categories, report = read_split(split, image_check=image_check, skip_bad_images=skip_bad_images,
                                             workers=workers)
    meta = {"categories": categories, "report": report, "image_stats": file_stats([r["image_path"] for r in records])}
    builder = make(categories)
    builder.records = records
    builder._label = {c["id"]: i for i, c in enumerate(categories)}
    builder.download_and_prepare(verification_mode="no_checks",
                                 download_mode="force_redownload" if table_exists else None)
    _write_json_atomic(meta_path, meta)
    return _finish(builder.as_dataset(split="data"), meta, subset, from_cache=False)


def _make_builder(cache_dir, fp, split: Split, format_name: str, categories) -> DetectionDatasetBuilder:
    return DetectionDatasetBuilder(
        cache_dir=cache_dir, dataset_name="recipe_detection", config_name=f"{format_name}-{fp}",
        annotation_file=split.source, image_root=split.image_root, annotation_format=format_name, fingerprint=fp,
        category_names=tuple(c["name"] for c in categories))


def _cached_images_ok(ds, meta, meta_path, source, image_check, skip_bad_images) -> bool:
    """True if the cached table can be used: every image unchanged, or changed but still good (the new
    stats are then recorded). False (rebuild) if some went bad and `skip_bad_images` drops them."""
    # Straight from Arrow: `ds[column]` formats row by row (3 s for 70k rows here, against 0.02 s).
    paths = ds.data.column("image_path").to_pylist()
    changed = changed_since(paths, meta["image_stats"])
    if not changed:
        return True
    annotation_file, image_root = source
    widths, heights = ds.data.column("width").to_pylist(), ds.data.column("height").to_pylist()
    records = [{"image_path": paths[i], "width": widths[i], "height": heights[i]} for i in changed]
    bad = find_bad_images(records, image_check)
    if bad and skip_bad_images:
        return False
    if bad:
        listed = [describe(records[i]["image_path"], problem, image_root) for i, problem in bad.items()]
        raise bad_images_error(annotation_file, listed, advice="they changed after the table was cached: restore "
                               "them, or set skip_bad_images to rebuild the table without them")
    meta["image_stats"] = file_stats(paths)
    _write_json_atomic(meta_path, meta)
    return True


def _finish(ds, meta, subset, *, from_cache: bool) -> DetectionData:
    if subset is not None:
        ds = ds.select(range(min(subset, len(ds))))
    return DetectionData(ds, meta["categories"], meta["report"], from_cache)


def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)
