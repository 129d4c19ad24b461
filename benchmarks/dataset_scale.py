"""Builder at BDD100K scale: python benchmarks/dataset_scale.py --frames 70000

Writes a synthetic BDD100K-size label file and stand-in images to a temporary folder, builds the Arrow
table from a cold cache in a child process (time and peak RSS), loads it again from the cache, and
prints build_s, build_peak_rss_mb and reload_s last. Nothing is kept unless --keep is given."""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402

from recipe.data.bdd100k import BDD_CATEGORIES  # noqa: E402

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from recipe.data.builder import load_detection_dataset
t = time.perf_counter()
data = load_detection_dataset({ann!r}, {img!r}, "bdd100k", {cache!r}, image_check="exists")  # 0-byte stand-ins
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": len(data.dataset), "cached": data.from_cache,
                  "boxes": data.report["boxes_kept"]}}))
"""


# Roughly BDD100K det_train's class mix (cars dominate, then signs and lights).
_MIX = {"car": 0.55, "traffic sign": 0.185, "traffic light": 0.145, "pedestrian": 0.07, "truck": 0.023,
        "bus": 0.009, "bicycle": 0.0056, "rider": 0.0035, "motorcycle": 0.0023, "train": 0.0001}


def write_bdd_label_file(path: str, frames: int, boxes_per_frame: float = 18.6, seed: int = 0,
                         image_dir: str | None = None) -> int:
    """Write `frames` frames with ~`boxes_per_frame` boxes each; touch empty stand-in images in `image_dir`
    (the builder only checks that they exist). Returns the number of boxes written."""
    rng = np.random.default_rng(seed)
    names = [c["name"] for c in BDD_CATEGORIES]
    probs = np.array([_MIX[n] for n in names])
    counts = rng.poisson(boxes_per_frame, frames)
    total = int(counts.sum())
    cats = rng.choice(len(names), total, p=probs / probs.sum())
    xy = np.stack([rng.uniform(0, 1260, total), rng.uniform(0, 700, total)], axis=1).round(3)
    wh = rng.uniform(4, 300, (total, 2)).round(3)
    crowd = rng.random(total) < 0.01
    if image_dir:
        os.makedirs(image_dir, exist_ok=True)
    k = 0
    with open(path, "w") as f:
        f.write("[")
        for i in range(frames):
            name = f"{i:08x}-{(i * 7919) % 99991:05d}.jpg"
            labels = []
            for _ in range(counts[i]):
                x1, y1 = xy[k]
                labels.append({"id": str(k), "category": names[cats[k]],
                               "attributes": {"occluded": False, "truncated": False, "trafficLightColor": "NA",
                                              "crowd": bool(crowd[k])},
                               "box2d": {"x1": float(x1), "y1": float(y1), "x2": float(min(x1 + wh[k, 0], 1279)),
                                         "y2": float(min(y1 + wh[k, 1], 719))}})
                k += 1
            f.write(("," if i else "") + json.dumps({"name": name, "attributes": {"weather": "clear"},
                                                     "timestamp": 10000, "labels": labels or None}))
            if image_dir:
                open(os.path.join(image_dir, name), "wb").close()
        f.write("]")
    return total


def load_in_child(ann, img, cache):
    code = CHILD.format(root=str(ROOT), ann=str(ann), img=str(img), cache=str(cache))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=70000)
    parser.add_argument("--boxes-per-frame", type=float, default=18.6)
    parser.add_argument("--keep", help="keep the generated files in this folder instead of a temporary one")
    parser.add_argument("--smoke", action="store_true", help="run on tiny inputs in seconds (figures mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.frames = 50
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        ann, img, cache = work / "det_train.json", work / "images", work / "cache"
        t = time.perf_counter()
        boxes = write_bdd_label_file(str(ann), args.frames, args.boxes_per_frame, image_dir=str(img))
        print(f"generated {args.frames} frames, {boxes} boxes, {ann.stat().st_size / 2**20:.0f} MiB "
              f"in {time.perf_counter() - t:.0f} s")
        build = load_in_child(ann, img, cache)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        reload = load_in_child(ann, img, cache)
        if build["cached"] or not reload["cached"] or reload["rows"] != args.frames:
            sys.exit(f"unexpected cache behaviour: build={build} reload={reload}")
        print(f"rows={build['rows']} boxes_kept={build['boxes']}")
        print(f"build_s={build['seconds']:.1f}")
        print(f"build_peak_rss_mb={peak_mb:.0f}")
        print(f"reload_s={reload['seconds']:.2f}")
