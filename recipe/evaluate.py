"""Score a COCO results file against COCO ground truth and write the metrics JSON."""

from __future__ import annotations

import json
import os

from .metrics import evaluate_results_file, format_per_class


def evaluate_files(gt: str, predictions: str, output: str | None = None) -> dict:
    """-> {12 metric keys (0..1, -1 where COCOeval has nothing to score), per_class: {name: AP or None}}."""
    metrics = evaluate_results_file(gt, predictions)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as f:
            json.dump(metrics, f, indent=2)
    return metrics


def print_metrics(metrics: dict) -> None:
    from .metrics import METRIC_KEYS

    print("  ".join(f"{k}={metrics[k]:.4f}" for k in METRIC_KEYS))
    print(format_per_class(metrics))
