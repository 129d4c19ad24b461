"""Builder at BDD100K scale: python scripts/benchmark_dataset.py --frames 70000

Writes a synthetic BDD100K-size label file and stand-in images to a temporary folder, builds the Arrow
table from a cold cache in a child process (time and peak RSS), loads it again from the cache, and
prints build_s, build_peak_rss_mb and reload_s last. Nothing is kept unless --keep is given."""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from recipe.data.builder import load_detection_dataset
t = time.perf_counter()
data = load_detection_dataset({ann!r}, {img!r}, "bdd100k", {cache!r})
print(json.dumps({{"seconds": time.perf_counter() - t, "rows": len(data.dataset), "cached": data.from_cache,
                  "boxes": data.report["boxes_kept"]}}))
"""


def load_in_child(ann, img, cache):
    code = CHILD.format(root=str(ROOT), ann=str(ann), img=str(img), cache=str(cache))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=70000)
    parser.add_argument("--boxes-per-frame", type=float, default=18.6)
    parser.add_argument("--keep", help="keep the generated files in this folder instead of a temporary one")
    args = parser.parse_args()
    from recipe.data.bench_bdd import write_bdd_label_file

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
