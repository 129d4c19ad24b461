"""A BDD100K-size label file (synthetic, current Scalabel schema) for the dataset benchmark."""

from __future__ import annotations

import json
import os

import numpy as np

from .bdd100k import BDD_CATEGORIES

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
