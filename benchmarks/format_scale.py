"""Label sets at scale: python benchmarks/format_scale.py --images 100000 [--formats voc yolo]

Writes the labels of N images as a Pascal VOC root and as an Ultralytics YOLO dataset (every image a hard link
to one of a few identical 640x480 JPEGs, ~7 boxes each), builds each table from a cold cache in a child process
(`--dataset`'s path: detect, read, image check `exists`, sanitize, Arrow), loads it again from the cache, and
prints per format `<format>_build_s` and `<format>_reload_s` last. Nothing is kept unless --keep is given."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CLASSES = ["car", "truck", "pedestrian", "traffic light", "traffic sign"]
WIDTH, HEIGHT = 640, 480

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from recipe.data.splits import load_dataset_splits
t = time.perf_counter()
data = load_dataset_splits({source!r}, cache_dir={cache!r}, image_check="exists", train_val_split=0)["train"]
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": len(data.dataset), "cached": data.from_cache,
                  "boxes": data.report.get("boxes_kept")}}))
"""


def boxes_for(n: int, seed: int = 0, per_image: float = 7.0) -> list[np.ndarray]:
    """[n] arrays [k, 5] (class, x1, y1, x2, y2) with integer corners inside the image (0-based, exclusive x2)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in rng.poisson(per_image, n):
        x1, y1 = rng.integers(0, WIDTH - 20, k), rng.integers(0, HEIGHT - 20, k)
        x2 = np.minimum(x1 + rng.integers(8, 200, k), WIDTH)
        y2 = np.minimum(y1 + rng.integers(8, 200, k), HEIGHT)
        out.append(np.stack([rng.integers(0, len(CLASSES), k), x1, y1, x2, y2], axis=1))
    return out


def _image(folder: Path, i: int) -> Path:
    """The file image `i` is a hard link to: one per 60,000 images (ext4 allows 65,000 links to a file)."""
    path = folder / f"one_{i // 60000}.jpg"
    if not path.exists():
        Image.fromarray(np.full((HEIGHT, WIDTH, 3), 127, np.uint8)).save(path, quality=80)
    return path


def write_voc(root: Path, boxes: list[np.ndarray]) -> Path:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i, rows in enumerate(boxes):
        name = f"{i:07d}"
        names.append(name)
        os.link(_image(root, i), root / "JPEGImages" / f"{name}.jpg")
        objects = "".join(f"<object><name>{CLASSES[c]}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
                          f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                          for c, x1, y1, x2, y2 in rows.tolist())
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{WIDTH}</width><height>{HEIGHT}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def write_yolo(root: Path, boxes: list[np.ndarray]) -> Path:
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(boxes):
        os.link(_image(root, i), root / "images" / "train" / f"{i:07d}.jpg")
        (root / "labels" / "train" / f"{i:07d}.txt").write_text("".join(
            f"{c} {(x1 + x2) / 2 / WIDTH:.6f} {(y1 + y2) / 2 / HEIGHT:.6f} {(x2 - x1) / WIDTH:.6f} "
            f"{(y2 - y1) / HEIGHT:.6f}\n" for c, x1, y1, x2, y2 in rows.tolist()))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {json.dumps(CLASSES)}\n")
    return root / "data.yaml"


def load_in_child(source, cache) -> dict:
    code = CHILD.format(root=str(ROOT), source=str(source), cache=str(cache))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(images: int, formats: list[str], work: Path) -> dict:
    """-> {format: {"write_s", "build_s", "reload_s", "rows", "boxes"}}; a cache that misbehaves is an error."""
    boxes = boxes_for(images)
    writers = {"voc": write_voc, "yolo": write_yolo}
    out = {}
    for fmt in formats:
        t = time.perf_counter()
        source = writers[fmt](work / fmt, boxes)
        written = time.perf_counter() - t
        build = load_in_child(source, work / f"cache_{fmt}")
        reload = load_in_child(source, work / f"cache_{fmt}")
        if build["cached"] or not reload["cached"] or reload["rows"] != images:
            raise RuntimeError(f"unexpected cache behaviour for {fmt}: build={build} reload={reload}")
        out[fmt] = {"write_s": written, "build_s": build["seconds"], "reload_s": reload["seconds"],
                    "rows": build["rows"], "boxes": build["boxes"]}
    return out


def report(results: dict) -> None:
    for fmt, r in results.items():
        print(f"{fmt}: {r['rows']} images, {r['boxes']} boxes (labels written in {r['write_s']:.0f} s)")
    for fmt, r in results.items():
        print(f"{fmt}_build_s={r['build_s']:.1f}")
        print(f"{fmt}_reload_s={r['reload_s']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100000)
    parser.add_argument("--formats", nargs="+", default=["voc", "yolo"], choices=["voc", "yolo"])
    parser.add_argument("--keep", help="keep the generated files in this folder instead of a temporary one")
    parser.add_argument("--smoke", action="store_true", help="run on tiny inputs in seconds (figures mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.images = 30
    with tempfile.TemporaryDirectory() as tmp:
        report(run(args.images, args.formats, Path(args.keep or tmp)))
