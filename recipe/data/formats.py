"""Where dataset formats plug in: one reader module per format under `recipe/data/`, listed in `READERS`.

Each reader module defines `FORMAT = Format(name, detect, open, description)` (or `REGISTERED`, a tuple of them):
- `detect(path_or_id) -> bool` looks at names and at most a few bytes (never parses a whole dataset);
- `open(path_or_id, options) -> {"train": Split, "validation": Split}` ("validation" may be missing: the loader
  then splits it off the training table, `--train_val_split`);
- each `Split` says what its reader names in errors (`source`), where its images live (`image_root`), a
  `fingerprint` that covers every byte `read` reads plus the options, and `read() -> (records, categories,
  counts)` in the shape `coco.read_coco` returns (boxes `xywh_abs`, untouched: `sanitize.py` edits them).
  An annotation may carry `where` (the format's own file and line/object): the data report names it when the
  box is dropped.

Nothing outside `recipe/data/` compares format names; it asks this module (`open_dataset`, `format_names`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from recipe.core.errors import DataError

# Detection order: the first reader whose `detect` says yes reads the dataset. A Hub id is what no path is, so
# the Hugging Face reader comes last.
READERS = ("voc", "yolo", "files", "hf")


@dataclass(frozen=True)
class DatasetOptions:
    """What a reader may need besides the path; every field is part of the fingerprint."""

    class_names: tuple[str, ...] | None = None  # class order for formats without one (VOC); None: sorted names
    box_convention: str = "inclusive"  # BDD100K box2d
    bdd_image_size: tuple[int, int] = (1280, 720)
    offline: bool = False  # Hub datasets: the local cache only
    cache_dir: str | None = None  # where extracted embedded images go (beside the Arrow cache)

    def key(self) -> str:
        return repr((self.class_names, self.box_convention, tuple(self.bdd_image_size)))


@dataclass
class Split:
    source: str
    image_root: str
    fingerprint: str
    read: Callable[[], tuple[list[dict], list[dict], dict]]
    size_advice: str = "fix width/height in the annotations"  # when an image is not the size they say


@dataclass(frozen=True)
class Format:
    name: str
    detect: Callable[[str], bool]
    open: Callable[[str, DatasetOptions], dict[str, Split]]
    description: str = ""


@dataclass
class OpenedDataset:
    format: str
    splits: dict[str, Split] = field(default_factory=dict)


_REGISTRY: dict[str, Format] = {}


def registry() -> dict[str, Format]:
    """name -> Format, in detection order (the reader modules are imported on first use)."""
    if not _REGISTRY:
        for module in READERS:
            loaded = importlib.import_module(f"{__package__}.{module}")
            for fmt in getattr(loaded, "REGISTERED", None) or (loaded.FORMAT,):
                _REGISTRY[fmt.name] = fmt
    return _REGISTRY


def format_names() -> list[str]:
    return list(registry())


def detect(path_or_id: str) -> str:
    """The name of the format that reads `path_or_id`, or a DataError saying what was looked for."""
    for name, fmt in registry().items():
        if fmt.detect(path_or_id):
            return name
    kinds = "; ".join(f"{f.name}: {f.description}" for f in registry().values())
    where = "is not a file or folder here" if not os.path.exists(path_or_id) else "is not a dataset this recipe reads"
    raise DataError(f"--dataset {path_or_id}: {where} (looked for {kinds})")


def open_dataset(path_or_id: str, options: DatasetOptions | None = None) -> OpenedDataset:
    """Detect the format and open the dataset's splits (nothing is read yet but names and small files)."""
    options = options or DatasetOptions()
    name = detect(path_or_id)
    return OpenedDataset(name, registry()[name].open(path_or_id, options))


# ---------------------------------------------------------------- helpers shared by the readers

def hash_files(paths: Iterable[str | os.PathLike], *extra: str) -> str:
    """Content hash of small files (label files, lists), in the order given, plus `extra` strings."""
    h = hashlib.blake2b(digest_size=16)
    for path in paths:
        h.update(str(path).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\1")
    for e in extra:
        h.update(e.encode() + b"\0")
    return h.hexdigest()


def hash_stats(paths: Iterable[str | os.PathLike], *extra: str) -> str:
    """Hash of (path, size, mtime) of large files (parquet, arrow): reading gigabytes of embedded images on every
    start would cost more than building the table; any write changes the mtime."""
    h = hashlib.blake2b(digest_size=16)
    for path in paths:
        st = os.stat(path)
        h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\0".encode())
    for e in extra:
        h.update(e.encode() + b"\0")
    return h.hexdigest()


def category_list(names: Iterable[str], first_id: int) -> list[dict]:
    return [{"id": i, "name": n} for i, n in enumerate(names, start=first_id)]


def number_images(names: list[str]) -> dict[str, int]:
    """Image names -> 1..N in sorted order (as `coco.map_image_ids` numbers string ids)."""
    return {n: i for i, n in enumerate(sorted(names), start=1)}


def is_path(path_or_id: str) -> bool:
    return Path(path_or_id).exists()
