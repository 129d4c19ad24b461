"""The model card (README.md) of an output folder: what was trained on what, and how it scored."""

from __future__ import annotations

import json
import os

from recipe.evaluation.coco_eval import METRIC_KEYS
from recipe.evaluation.metrics import PER_CLASS_PREFIX

PLOT_CAPTIONS = {
    "pr_curves": "Precision-recall per class (IoU 0.50 and 0.50:0.95)",
    "per_class_ap": "AP per class",
    "confusion_matrix": "Confusion matrix (classes + background)",
    "error_breakdown": "COCO error breakdown (analyze(): localisation, similar class, other class, background, missed)",
    "val_predictions": "Validation images: ground truth (left) and predictions (right)",
    "training_curves": "Losses, learning rate and mAP over the run",
}


def plots_section(output_dir: str, plots: dict[str, str] | None) -> str:
    """Markdown images of the plots, linked relative to the card (the folder may move or be pushed)."""
    if not plots:
        return ""
    lines = ["## Plots", "", "The numbers behind each figure are in the JSON file of the same name.", ""]
    for name, path in plots.items():
        rel = os.path.relpath(path, output_dir).replace(os.sep, "/")
        lines += [f"**{PLOT_CAPTIONS.get(name, name)}**", "", f"![{name}]({rel})", ""]
    return "\n".join(lines)


def write_model_card(output_dir: str, model, *, data_args, metrics: dict, precision: str,
                     plots: dict[str, str] | None = None, ema: str | None = None,
                     threshold: dict | None = None, schedule: str | None = None) -> None:
    rows = "\n".join(f"| {k} | {metrics[f'eval_{k}']:.4f} |" for k in METRIC_KEYS if f"eval_{k}" in metrics)
    prefix = f"eval_{PER_CLASS_PREFIX}"
    weights = f" Weights: {ema}." if ema else ""
    weights += f" Schedule: {schedule}." if schedule else ""
    per_class = "\n".join(f"| {k[len(prefix):]} | {v:.4f} |" for k, v in metrics.items() if k.startswith(prefix))
    train_on = data_args.dataset or data_args.train_ann
    val_on = f"the validation split of {data_args.dataset}" if data_args.dataset else data_args.val_ann
    classes = ", ".join(model.config.id2label[i] for i in sorted(model.config.id2label))
    text = f"""---
library_name: transformers
pipeline_tag: object-detection
tags: [object-detection, {model.config.model_type}]
{model_index(model.config.model_type, data_args.dataset or data_args.val_ann, metrics)}---

# {model.config.model_type} fine-tuned for object detection

Trained with the detection fine-tuning recipe on `{train_on}`; evaluated with COCOeval
(pycocotools, bbox, top-100 detections per image, score threshold 0 unless set) on `{val_on}`.
Precision: {precision}.{weights} Augmentation: {data_args.augmentation}. Classes: {classes}.

## Evaluation

| metric | value |
|---|---|
{rows or "| (no validation set) | |"}

Per-class AP (IoU 0.50:0.95):

| class | AP |
|---|---|
{per_class or "| - | - |"}

{plots_section(output_dir, plots)}
## Use

```python
from transformers import pipeline
detector = pipeline("object-detection", model="{output_dir}")
detections = detector("image.jpg", threshold={threshold["threshold"] if threshold else 0.5})
```
{threshold_line(threshold)}"""
    with open(os.path.join(output_dir, "README.md"), "w") as f:
        f.write(text)


def threshold_line(threshold: dict | None) -> str:
    if not threshold:
        return ""
    return (f"\nThe threshold {threshold['threshold']} keeps the detections of best F1 on the validation set "
            f"(F1 {threshold['f1']:.3f}, precision {threshold['precision']:.3f}, recall {threshold['recall']:.3f} at "
            "IoU 0.5); it is `suggested_threshold` in config.json, the default of `detr-predict`, and the threshold "
            "of the plots above.\n")


def model_index(model_type: str, dataset: str | None, metrics: dict) -> str:
    """Hub `model-index` metadata (YAML) so the Hub shows the evaluation; empty without metrics."""
    rows = [(k, metrics[f"eval_{k}"]) for k in METRIC_KEYS if f"eval_{k}" in metrics]
    if not rows:
        return ""
    lines = ["model-index:", f"- name: {model_type}-finetuned", "  results:", "  - task:",
             "      type: object-detection", "    dataset:", f"      name: {json.dumps(str(dataset))}",
             "      type: custom", "    metrics:"]
    for key, value in rows:
        lines += [f"    - type: {key}", f"      value: {value:.4f}", f"      name: COCO {key}"]
    return "\n".join(lines) + "\n"
