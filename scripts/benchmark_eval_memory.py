"""Evaluation memory: python scripts/benchmark_eval_memory.py [--small 200 --large 2000]

Evaluates the demo's tiny model on `--small` and `--large` synthetic images, each in a fresh process,
with the recipe's per-batch metrics and with the Trainer's default path (every model output kept and
concatenated, scored at the end), and prints the peak-RSS growth per extra image of each (from the
median peak of `--repeats` runs per point) and the ratio."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
from recipe.benchmark import eval_memory_run
out = eval_memory_run({mode!r}, {ann!r}, {images!r}, {n}, {cache!r})
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(mode, ann, images, n, cache):
    code = CHILD.format(root=str(ROOT), mode=mode, ann=str(ann), images=str(images), n=n, cache=str(cache))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per point; the median peak is used")
    args = parser.parse_args()
    from recipe.data.synthetic import make_demo_dataset

    with tempfile.TemporaryDirectory() as tmp:
        make_demo_dataset(tmp, seed=5, num_train=1, num_val=args.large)
        ann, images = Path(tmp) / "val" / "annotations.json", Path(tmp) / "val" / "images"
        growth = {}
        for mode in ("recipe", "trainer_default"):
            peaks, maps = {}, {}
            for n in (args.small, args.large):
                runs = [child(mode, ann, images, n, Path(tmp) / "cache") for _ in range(args.repeats)]
                peaks[n] = statistics.median(r["peak_rss_mb"] for r in runs)
                maps[n] = runs[0]["map"]
                print(f"{mode}: {n} images, peak RSS MB {[round(r['peak_rss_mb']) for r in runs]} "
                      f"(median {peaks[n]:.0f}), map {maps[n]:.4f}")
            growth[mode] = (peaks[args.large] - peaks[args.small]) * 1024 / (args.large - args.small)
        print(f"recipe_kb_per_image={growth['recipe']:.1f}")
        print(f"trainer_default_kb_per_image={growth['trainer_default']:.1f}")
        print(f"ratio={growth['trainer_default'] / max(growth['recipe'], 0.1):.1f}x")
