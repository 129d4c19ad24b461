"""Score a results file (COCO results or BDD100K frame list) against ground truth; write the metrics JSON."""

from __future__ import annotations

import json
import os

from .data.coco import DataError, load_json
from .metrics import METRIC_KEYS, _quiet_coco, coco_eval, format_per_class


def load_gt_and_predictions(gt: str, predictions: str, fmt: str = "coco", box_convention: str = "inclusive"):
    """-> (COCO ground truth object, COCO results list). BDD100K files are converted with the official rules."""
    gt_data, preds = load_json(gt), load_json(predictions)
    if fmt == "bdd100k":
        from .data.bdd100k import bdd_predictions_to_coco_results, bdd_to_coco

        if not isinstance(gt_data, list) or not isinstance(preds, list):
            raise DataError(f"{gt} / {predictions}: with --format bdd100k both files are BDD100K frame lists")
        gt_data = bdd_to_coco(gt_data, box_convention, source=str(gt))
        name_to_id = {img["file_name"]: img["id"] for img in gt_data["images"]}
        preds = bdd_predictions_to_coco_results(preds, name_to_id, box_convention, source=str(predictions))
    elif fmt != "coco":
        raise DataError(f"--format {fmt!r}: choose coco or bdd100k")
    if not isinstance(gt_data, dict) or "images" not in gt_data:
        raise DataError(f"{gt}: not a COCO ground-truth file (for BDD100K frame lists pass --format bdd100k)")
    if not isinstance(preds, list):
        raise DataError(f"{predictions}: a COCO results file is a JSON list of detections")
    return _quiet_coco(gt_data), preds


def evaluate_files(gt: str, predictions: str, output: str | None = None, fmt: str = "coco",
                   box_convention: str = "inclusive") -> dict:
    """-> {12 metric keys (0..1, -1 where COCOeval has nothing to score), per_class: {name: AP or None}}."""
    metrics = coco_eval(*load_gt_and_predictions(gt, predictions, fmt, box_convention))
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


def print_metrics(metrics: dict) -> None:
    print("  ".join(f"{k}={metrics[k]:.4f}" for k in METRIC_KEYS))
    print(format_per_class(metrics))
