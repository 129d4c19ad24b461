"""Ultralytics YOLO datasets -> raw records (as `coco.read_coco`): a `data.yaml` with `path`, `train`, `val` and
`names`, images in folders (or listed in .txt files), one label file per image.

Where things are, as Ultralytics finds them: `path` is the root (absolute, or relative to the yaml's folder; the
yaml's folder when absent); `train` / `val` are folders of images, .txt lists of image paths, or lists of those,
relative to the root (Roboflow exports' `../train/images` also resolve under the root); the label file of
`<...>/images/<...>/x.jpg` is `<...>/labels/<...>/x.txt` (the last `images` folder of the path); an image without
one has no boxes. `names` is a list (ids 0..N-1) or a mapping {id: name}.

Each label line is `class cx cy w h` (`cxcywh_norm`), converted with the image's real size (from its header,
after EXIF orientation, as Ultralytics does) to `xywh_abs`. Bad lines are one-line errors naming the file and line.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recipe.core.errors import DataError
from recipe.data.formats import DatasetOptions, Format, Split, hash_files
from recipe.data.image_check import default_workers
from recipe.data.images import IMAGE_SUFFIXES

YAML_SPLITS = {"train": "train", "validation": "val"}


def detect(path: str) -> bool:
    return path.endswith((".yaml", ".yml")) and os.path.isfile(path)


def label_path(image_path: str) -> str:
    """`.../images/a/x.jpg` -> `.../labels/a/x.txt` (the last `images` folder of the path)."""
    head, sep, tail = image_path.rpartition(f"{os.sep}images{os.sep}")
    base = f"{head}{os.sep}labels{os.sep}{tail}" if sep else image_path
    return os.path.splitext(base)[0] + ".txt"


def parse_names(names, source) -> list[dict]:
    """`names` as a list or a mapping -> [{id, name}] in id order."""
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DataError(f"{source}: 'names' must be a list of class names or a mapping {{id: name}}, got {names!r:.80}")
    out = []
    for key, name in sorted(names.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else -1):
        if not (isinstance(key, int) or str(key).isdigit()) or int(key) < 0:
            raise DataError(f"{source}: names: class id {key!r} must be an integer >= 0")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{source}: names[{key}]: a class name must be a non-empty string, got {name!r}")
        out.append({"id": int(key), "name": name})
    seen = [c["name"] for c in out]
    if len(set(seen)) != len(seen):
        raise DataError(f"{source}: names: class names must be unique, got {seen}")
    return out


def parse_label_file(path: str, width: int, height: int, known_ids: set) -> list[dict]:
    """-> [{category_id, bbox (xywh_abs), where}] of one label file for an image of width x height."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    out = []
    for n, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{n}"
        if len(fields) != 5:
            raise DataError(f"{where}: {len(fields)} numbers, a box label is 5 (class cx cy w h, normalised); "
                            f"got {line.strip()!r:.80}")
        try:
            cls = float(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise DataError(f"{where}: not numbers: {line.strip()!r:.80}") from None
        if not cls.is_integer() or int(cls) not in known_ids:
            raise DataError(f"{where}: class index {fields[0]} is out of range (data.yaml names ids "
                            f"{min(known_ids)}..{max(known_ids)})")
        if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
            raise DataError(f"{where}: coordinates must be normalised to [0, 1] (cx cy w h), got "
                            f"{' '.join(fields[1:])}; absolute pixels need dividing by the image size")
        out.append({"category_id": int(cls), "bbox": cxcywh_norm_to_xywh_abs([cx, cy, w, h], width, height),
                    "where": where})
    return out


# Normalised text carries rounding: a box written from one touching the border comes back 1e-14 px past it. Corners
# this close to the border are put on it (a real overrun, e.g. cx 0.9 w 0.4, is sanitize's to clamp and count).
ON_BORDER_PX = 1e-6


def cxcywh_norm_to_xywh_abs(box: list[float], width: int, height: int) -> list[float]:
    cx, cy, w, h = box
    out = [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
    for i, size in ((0, width), (1, height)):
        start, end = out[i], out[i] + out[i + 2]
        if abs(start) < ON_BORDER_PX or abs(end - size) < ON_BORDER_PX:
            start = 0.0 if abs(start) < ON_BORDER_PX else start
            end = float(size) if abs(end - size) < ON_BORDER_PX else end
            out[i], out[i + 2] = start, end - start
    return out


class YoloDataset:
    def __init__(self, yaml_path: str, options: DatasetOptions):
        import yaml

        self.yaml_path = Path(yaml_path)
        try:
            data = yaml.safe_load(self.yaml_path.read_text())
        except yaml.YAMLError as e:
            raise DataError(f"{yaml_path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict) or "names" not in data or "train" not in data:
            raise DataError(f"{yaml_path}: not an Ultralytics data.yaml (needs 'train' and 'names'; has "
                            f"{sorted(data) if isinstance(data, dict) else type(data).__name__})")
        self.categories = parse_names(data["names"], yaml_path)
        root = Path(data.get("path") or ".")
        self.root = root if root.is_absolute() else (self.yaml_path.parent / root)
        self.images = {split: self._images(data[key], key) for split, key in YAML_SPLITS.items() if data.get(key)}
        labels = [lp for paths in self.images.values() for p in paths if os.path.isfile(lp := label_path(p))]
        self.fingerprint = hash_files([self.yaml_path, *labels], "yolo", options.key(),
                                      *(p for paths in self.images.values() for p in paths))

    def _resolve(self, value: str, key: str) -> Path:
        path = Path(value)
        if path.is_absolute():
            candidates = [path]
        else:
            candidates = [self.root / path]
            if value.startswith("../"):  # Roboflow's exports: "../train/images" meant under the root
                candidates.append(self.root / value[3:])
        for candidate in candidates:
            if candidate.exists():
                return candidate
        raise DataError(f"{self.yaml_path}: {key}: {value!r} not found (looked at {candidates[0]}); paths are "
                        "relative to 'path' (or to the yaml's folder)")

    def _images(self, value, key: str) -> list[str]:
        out = []
        for item in value if isinstance(value, list) else [value]:
            path = self._resolve(str(item), key)
            if path.is_dir():
                out += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            else:  # a .txt list of image paths, relative to the list's folder
                for line in path.read_text().splitlines():
                    if line.strip():
                        p = Path(line.strip())
                        out.append(str(p if p.is_absolute() else (path.parent / p)))
        if not out:
            raise DataError(f"{self.yaml_path}: {key}: no images found in {value!r}")
        return out

    def read(self, split: str):
        from recipe.data.images import ImageError, image_size

        paths = self.images[split]
        known = {c["id"] for c in self.categories}

        def one(path):
            label = label_path(path)
            if not os.path.isfile(label):
                return 0, 0, None
            try:
                width, height = image_size(path)
            except ImageError as e:
                raise DataError(f"{label}: its image cannot be read, so its boxes cannot be scaled ({e})") from None
            return width, height, parse_label_file(label, width, height, known)

        chunks = [paths[i:i + 256] for i in range(0, len(paths), 256)]  # a thread pool ignores map's chunksize
        with ThreadPoolExecutor(default_workers()) as pool:
            results = [r for chunk in pool.map(lambda c: [one(p) for p in c], chunks) for r in chunk]
        base = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
        names = [os.path.splitext(os.path.relpath(p, base))[0] for p in paths]
        ids = {n: i for i, n in enumerate(sorted(names), start=1)}
        counts = {"images_without_label_file": 0}
        records, next_id = [], 1
        for path, name, (width, height, boxes) in zip(paths, names, results):
            counts["images_without_label_file"] += boxes is None
            anns = []
            for b in boxes or []:
                anns.append({"id": next_id, **b, "area": b["bbox"][2] * b["bbox"][3], "iscrowd": 0})
                next_id += 1
            records.append({"image_id": ids[name], "orig_image_id": name, "image_path": path, "width": width,
                            "height": height, "annotations": anns})
        return sorted(records, key=lambda r: r["image_id"]), self.categories, counts


def open_yolo(path: str, options: DatasetOptions) -> dict[str, Split]:
    ds = YoloDataset(path, options)
    return {split: Split(f"{path} ({YAML_SPLITS[split]})", str(ds.root), f"{ds.fingerprint}-{split}",
                         functools.partial(ds.read, split), "replace the image (its label file is scaled by it)")
            for split in ds.images}


FORMAT = Format("yolo", detect, open_yolo, "an Ultralytics data.yaml (path, train, val, names)")
