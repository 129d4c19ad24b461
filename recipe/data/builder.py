"""The `datasets` builder (today's form of a loading script): annotations -> typed, Arrow-cached table.

datasets >= 4 has no script loading, so the builder is a class in the package, instantiated directly.
The cache key is a hash of the annotation file's bytes, the image root and the format, so loading the
same files again is a cache hit and editing the annotation file invalidates it. The sanitizing report
and the category list are kept beside the cache, so a cache hit does not re-read the annotation file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from .bdd100k import read_bdd100k
from .coco import DataError, read_coco
from .sanitize import sanitize_records

# Bump when the table's content or schema changes, so old caches are not reused.
SCHEMA_VERSION = "1"


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


class DetectionDatasetBuilder(datasets.GeneratorBasedBuilder):
    """One split ("data") per annotation file; records are sanitized before they are written."""

    BUILDER_CONFIG_CLASS = DetectionConfig
    # Records already read by `load_detection_dataset` (to avoid parsing the file twice); else None.
    records: list[dict] | None = None
    # Dataset category id -> contiguous label (ClassLabel index); set by `load_detection_dataset`.
    _label: dict = {}

    def _info(self):
        return datasets.DatasetInfo(features=features_for(list(self.config.category_names)))

    def _split_generators(self, dl_manager):
        return [datasets.SplitGenerator(name="data")]

    def _generate_examples(self):
        records = self.records
        if records is None:
            records, _, _ = read_source(self.config.annotation_file, self.config.image_root,
                                        self.config.annotation_format, self.config.box_convention,
                                        self.config.bdd_image_size)
        for rec in records:
            anns = rec["annotations"]
            yield rec["image_id"], {
                "image_id": rec["image_id"], "orig_image_id": rec["orig_image_id"],
                "image_path": rec["image_path"], "width": rec["width"], "height": rec["height"],
                "objects": {
                    "id": [a["id"] for a in anns], "bbox": [a["bbox"] for a in anns],
                    "category": [self._label[a["category_id"]] for a in anns],
                    "area": [a["area"] for a in anns], "iscrowd": [a["iscrowd"] for a in anns],
                },
            }


FORMATS = ("auto", "coco", "bdd100k")


def detect_format(annotation_file) -> str:
    """A COCO file is a JSON object, a BDD100K/Scalabel frame list a JSON array: peek, don't parse."""
    with open(annotation_file, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "bdd100k" if head.startswith(b"[") else "coco"


def read_source(annotation_file, image_root, annotation_format="auto", box_convention="inclusive",
                bdd_image_size=(1280, 720)):
    """Read and sanitize one source. Returns (records, categories [{id, name}], report)."""
    if annotation_format not in FORMATS:
        raise DataError(f"annotation_format {annotation_format!r} is not one of {FORMATS}")
    if annotation_format == "auto":
        annotation_format = detect_format(annotation_file)
    if annotation_format == "bdd100k":
        records, categories, counts = read_bdd100k(annotation_file, image_root, box_convention,
                                                   image_size=tuple(bdd_image_size))
    else:
        records, categories, counts = read_coco(annotation_file, image_root)
    records, report = sanitize_records(records, counts)
    return records, categories, report


@dataclass
class DetectionData:
    dataset: datasets.Dataset
    categories: list[dict]  # [{id, name}] in the file's order; label i <-> categories[i]
    report: dict
    from_cache: bool


def fingerprint_source(annotation_file, image_root, *options) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(annotation_file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    h.update(f"|{Path(image_root).resolve()}|{options}|{SCHEMA_VERSION}".encode())
    return h.hexdigest()


def default_cache_dir() -> str:
    return os.path.join(datasets.config.HF_DATASETS_CACHE, "recipe_detection")


def load_detection_dataset(annotation_file, image_root, annotation_format="auto", cache_dir: str | None = None,
                           subset: int | None = None, box_convention: str = "inclusive",
                           bdd_image_size=(1280, 720)) -> DetectionData:
    """Build (or load from cache) the table for one annotation file. `subset`: first N images by id."""
    if not Path(annotation_file).is_file():
        raise DataError(f"{annotation_file}: annotation file not found")
    cache_dir = cache_dir or default_cache_dir()
    fp = fingerprint_source(annotation_file, image_root, annotation_format, box_convention, tuple(bdd_image_size))
    meta_path = Path(cache_dir) / "recipe_meta" / f"{fp}.json"
    records = None
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
    else:
        records, categories, report = read_source(annotation_file, image_root, annotation_format, box_convention,
                                                  bdd_image_size)
        meta = {"categories": categories, "report": report}
    names = [c["name"] for c in meta["categories"]]
    builder = DetectionDatasetBuilder(
        cache_dir=cache_dir, dataset_name="recipe_detection", config_name=f"{annotation_format}-{fp}",
        annotation_file=str(annotation_file), image_root=str(image_root),
        annotation_format=annotation_format, box_convention=box_convention, bdd_image_size=tuple(bdd_image_size),
        fingerprint=fp,
        category_names=tuple(names))
    builder.records = records
    builder._label = {c["id"]: i for i, c in enumerate(meta["categories"])}
    from_cache = builder.info.splits is not None and "data" in (builder.info.splits or {})
    builder.download_and_prepare(verification_mode="no_checks")
    if not meta_path.is_file():
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = meta_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
    ds = builder.as_dataset(split="data")
    if subset is not None:
        ds = ds.select(range(min(subset, len(ds))))
    return DetectionData(ds, meta["categories"], meta["report"], from_cache)
