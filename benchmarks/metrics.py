"""Scoring time of the COCOeval backends: python benchmarks/metrics.py [--images 5000 --dets 100 --repeats 3]

Synthetic ground truth (COCO-like: 7 boxes per image over 80 classes, some crowd) and detections
(jittered copies of the ground truth plus false positives, `--dets` per image). Prints the median
scoring time (loadRes + evaluate + accumulate + summarize) of each backend, measured side by side, and
the ratio, plus the largest metric difference between them."""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from recipe.evaluation.coco_eval import METRIC_KEYS, coco_eval, quiet_coco


def synthetic(images: int, dets: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gt = {"images": [{"id": i, "width": 640, "height": 480} for i in range(1, images + 1)],
          "categories": [{"id": c, "name": f"class{c}"} for c in range(1, 81)], "annotations": []}
    rows = []
    for i in range(1, images + 1):
        boxes = np.column_stack([rng.uniform(0, 560, 7), rng.uniform(0, 400, 7), rng.uniform(8, 80, (7, 2))])
        cats = rng.integers(1, 81, 7)
        for b, c in zip(boxes, cats):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(c),
                                      "bbox": b.tolist(), "area": float(b[2] * b[3]),
                                      "iscrowd": int(rng.random() < 0.02)})
        jitter = boxes[rng.integers(0, 7, dets)] + rng.normal(0, 4, (dets, 4))
        jitter[:, 2:] = np.abs(jitter[:, 2:]) + 1
        labels = np.where(rng.random(dets) < 0.5, cats[rng.integers(0, 7, dets)], rng.integers(1, 81, dets))
        rows.append(np.column_stack([np.full(dets, i), jitter, rng.random(dets), labels]))
    return gt, np.concatenate(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="run on tiny inputs in seconds (figures mean nothing)")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.dets, args.repeats = 20, 10, 1
    gt, dets = synthetic(args.images, args.dets)
    print(f"{args.images} images, {len(gt['annotations'])} ground-truth boxes, {len(dets)} detections")
    times, results = {"pycocotools": [], "faster_coco_eval": []}, {}
    for _ in range(args.repeats):
        for backend in times:  # alternate, so both see the same machine load
            coco_gt = quiet_coco(gt)
            start = time.perf_counter()
            results[backend] = coco_eval(coco_gt, dets, backend=backend)
            times[backend].append(time.perf_counter() - start)
    diff = max(abs(results["pycocotools"][k] - results["faster_coco_eval"][k]) for k in METRIC_KEYS)
    for backend, values in times.items():
        print(f"{backend}_s={statistics.median(values):.2f} (runs: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"max_metric_diff={diff:.1e}")
    print(f"speedup={statistics.median(times['pycocotools']) / statistics.median(times['faster_coco_eval']):.1f}x")
