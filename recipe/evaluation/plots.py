"""Figures of a finished run: PR curves, per-class AP, confusion matrix, COCO error breakdown, predictions next to
ground truth, training curves. Each `<name>.png` (or .jpg) has the numbers it shows in `<name>.json` beside it.

matplotlib (Agg backend, no display needed) is imported only when a figure is drawn.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from recipe.core.draw import class_colour, draw_boxes, grid, titled
from recipe.data.images import ImageError, read_image
from recipe.evaluation import analysis
from recipe.evaluation.coco_eval import ROW_BOX, ROW_CATEGORY, ROW_IMAGE_ID, ROW_SCORE, coco_eval

logger = logging.getLogger("recipe")

PLOT_FILES = {"pr_curves": "pr_curves.png", "per_class_ap": "per_class_ap.png",
              "confusion_matrix": "confusion_matrix.png", "error_breakdown": "error_breakdown.png",
              "val_predictions": "val_predictions.jpg", "training_curves": "training_curves.png"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, data: dict, path: str) -> str:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    _write_json(path, data)
    return path


def _write_json(figure_path: str, data: dict) -> None:
    with open(os.path.splitext(figure_path)[0] + ".json", "w") as f:
        json.dump(data, f, indent=1)


def plot_pr_curves(data: dict, path: str) -> str:
    """Two panels (IoU .5; mean over IoU .5:.95), one curve per class with ground truth, AP in the legend."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    recall = data["recall"]
    for ax, key, ap_key, title in ((axes[0], "precision_50", "ap_50", "IoU 0.50"),
                                   (axes[1], "precision_50_95", "ap", "IoU 0.50:0.95 (mean)")):
        for i, (name, c) in enumerate(data["classes"].items()):
            if c is not None:
                ax.plot(recall, c[key], color=_mpl_colour(i), lw=1.5, label=f"{name} {c[ap_key]:.3f}")
        ax.set(title=f"precision-recall, {title}", xlabel="recall", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        if len(data["classes"]) <= 20:
            ax.legend(fontsize=8, loc="lower left", title="class AP", title_fontsize=8)
    axes[0].set_ylabel("precision")
    return _save(fig, data, path)


def plot_per_class_ap(data: dict, path: str) -> str:
    """Horizontal bars of AP (IoU .5:.95) and AP50 per class, with the count of ground-truth boxes."""
    plt = _pyplot()
    n = len(data["classes"])
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.38 * n))
    y = np.arange(n)
    ap = [v if v is not None else 0.0 for v in data["ap"]]
    ap50 = [v if v is not None else 0.0 for v in data["ap_50"]]
    ax.barh(y - 0.2, ap50, height=0.4, color="#9ecae1", label="AP50")
    ax.barh(y + 0.2, ap, height=0.4, color="#3182bd", label="AP (IoU .50:.95)")
    for i, (v, gt) in enumerate(zip(data["ap"], data["num_gt"])):
        ax.text(max(ap[i], ap50[i]) + 0.01, i, "no ground truth" if v is None else f"{v:.3f}  (n={gt})",
                va="center", fontsize=8)
    ax.set_yticks(y, data["classes"])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.15), xlabel="average precision", title="per-class AP (all areas, 100 detections)")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, data, path)


def plot_confusion_matrix(data: dict, path: str) -> str:
    plt = _pyplot()
    n = len(data["classes"])
    fig, ax = plt.subplots(figsize=(2.5 + 0.55 * n, 2 + 0.5 * n))
    norm = np.asarray(data["normalized"])
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(norm):
        if data["counts"][i][j]:
            ax.text(j, i, f"{v:.2f}\n({data['counts'][i][j]})", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 else "black")
    ax.set_xticks(range(n), data["classes"], rotation=45, ha="right")
    ax.set_yticks(range(n), data["classes"])
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"confusion matrix (rows normalised), IoU >= {data['iou_threshold']:g}, "
                 f"score > {data['score_threshold']:g}")
    return _save(fig, data, path)


# Colours of the analyze() stages, as in the COCO toolkit's figures (CocoEval.m makeplot).
_STAGE_COLOURS = ["#ffffff", "#ffffff", "#4f82bd", "#bf4f4c", "#5ce661", "#8063a3", "#ff9900"]


def plot_error_breakdown(data: dict, path: str) -> str:
    """Left: the analyze() area chart (each band the PR gained by forgiving one more error type). Right: the
    AP gained per error type."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.2, 1]})
    recall, prev = np.asarray(data["recall"]), np.zeros(len(data["recall"]))
    for stage, colour in zip(data["stages"], _STAGE_COLOURS):
        curve = np.asarray(data["curves"][stage])
        left.fill_between(recall, prev, curve, color=colour, edgecolor="black", lw=0.6,
                          label=f"[{data['ap'][stage]:.3f}] {stage}")
        prev = curve
    left.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
             title="COCO analyze(): PR as errors are forgiven (mean over classes)")
    left.legend(fontsize=8, loc="lower left")
    names, values = list(data["errors"]), list(data["errors"].values())
    right.barh(names, values, color=_STAGE_COLOURS[2:])
    for i, v in enumerate(values):
        right.text(v + 0.005, i, f"{v:+.3f}", va="center", fontsize=8)
    right.invert_yaxis()
    right.set(xlabel="AP gained if this error type were fixed", xlim=(0, max(values + [0.05]) * 1.25),
              title="error breakdown")
    return _save(fig, data, path)


def plot_training_curves(data: dict, path: str) -> str:
    """Loss terms, learning rate, and eval mAP against the step."""
    plt = _pyplot()
    fig, (losses, lr, maps) = plt.subplots(1, 3, figsize=(15, 4))
    train = data["train"]
    for key in (k for k in train if k.startswith("loss")):
        points = [(s, v) for s, v in zip(train["step"], train[key]) if v is not None]
        if points:
            losses.plot(*zip(*points), lw=1.8 if key == "loss" else 1.0, label=key)
    losses.set(title="training loss (weighted total) and its terms", xlabel="step")
    if losses.get_legend_handles_labels()[0]:  # a run too short to log a loss has nothing to name
        losses.legend(fontsize=8)
    # `learning_rate` is the main group's (the optimizer lists it first); the backbone's has its own series.
    for key, style in (("learning_rate", {"color": "black", "label": "main"}),
                       ("learning_rate_backbone", {"color": "tab:blue", "ls": "--", "label": "backbone"})):
        points = [(s, v) for s, v in zip(train["step"], train.get(key, [])) if v is not None]
        if points:
            lr.plot(*zip(*points), lw=1, **style)
    if "learning_rate_backbone" in train:
        lr.legend(fontsize=8)
    lr.set(title="learning rate", xlabel="step")
    evals = data["eval"]
    for key in (k for k in ("eval_map", "eval_map_50", "eval_map_75") if k in evals):
        maps.plot(evals["step"], evals[key], marker="o", label=key[len("eval_"):])
    maps.set(title="evaluation mAP", xlabel="step", ylim=(0, 1))
    if any(k in evals for k in ("eval_map", "eval_map_50")):
        maps.legend(fontsize=8)
    for ax in (losses, lr, maps):
        ax.grid(alpha=0.3)
    return _save(fig, data, path)


def prediction_grid(coco_gt, rows: np.ndarray, image_paths: dict[int, str], path: str, *, score_threshold: float,
                    num_images: int = 8, columns: int = 2, cell_width: int = 640) -> str:
    """The first `num_images` images by id, ground truth (left) next to detections scoring above
    `score_threshold` (right); the boxes of both sides are listed in the JSON."""
    cat_ids = sorted(coco_gt.getCatIds())
    label = {c: i for i, c in enumerate(cat_ids)}
    names = {i: coco_gt.cats[c]["name"] for c, i in label.items()}
    shown, cells = [], []
    for img_id in sorted(image_paths)[:num_images]:
        try:
            image = read_image(image_paths[img_id])
        except ImageError as e:
            logger.warning("prediction grid: %s", e)
            continue
        gt = list(coco_gt.imgToAnns.get(img_id, []))
        dets = rows[(rows[:, ROW_IMAGE_ID] == img_id) & (rows[:, ROW_SCORE] > score_threshold)] if len(rows) else rows
        left = draw_boxes(image, [a["bbox"] for a in gt], [label[a["category_id"]] for a in gt], names=names)
        right = draw_boxes(image, dets[:, ROW_BOX], [label[int(c)] for c in dets[:, ROW_CATEGORY]], names=names,
                           scores=dets[:, ROW_SCORE])
        pair = grid([titled(left, "ground truth"), titled(right, f"predictions (score > {score_threshold:g})")],
                    columns=2, cell_width=cell_width // 2, gap=2)
        cells.append(pair)
        shown.append({"image_id": img_id, "file": os.path.basename(image_paths[img_id]),
                      "ground_truth": [{"category": names[label[a["category_id"]]], "bbox": a["bbox"],
                                        "iscrowd": int(a.get("iscrowd", 0))} for a in gt],
                      "predictions": [{"category": names[label[int(r[ROW_CATEGORY])]], "score": float(r[ROW_SCORE]),
                                       "bbox": [float(v) for v in r[ROW_BOX]]} for r in dets]})
    if cells:
        grid(cells, columns=columns, cell_width=cell_width).save(path, quality=90)
    _write_json(path, {"score_threshold": score_threshold, "images": shown})
    return path


def write_plots(output_dir: str, coco_gt, rows: np.ndarray, *, image_paths: dict[int, str] | None = None,
                log_history: list[dict] | None = None, score_threshold: float | None = None,
                supercategories: dict[int, str] | None = None) -> dict[str, str]:
    """Every figure (and its JSON) into `output_dir` (created): from the ground truth (COCO object), the result
    rows [N, 7] of the evaluation (all kept detections), the image files by id (for the prediction grid) and the
    Trainer's log_history (for the training curves). The confusion matrix and the prediction grid keep detections
    scoring above `score_threshold`; None: the score of best F1 on these rows (`analysis.best_f1_threshold`; 0.5
    without detections). Returns {plot name: path}; logs the time it took."""
    start = time.perf_counter()
    if score_threshold is None:
        score_threshold = analysis.best_f1_threshold(coco_gt, rows)["threshold"]
        score_threshold = 0.5 if score_threshold is None else round(score_threshold, 4)
    os.makedirs(output_dir, exist_ok=True)
    target = {k: os.path.join(output_dir, f) for k, f in PLOT_FILES.items()}
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    curves = coco_eval(coco_gt, rows, curves=True)["curves"]
    written = {
        "pr_curves": plot_pr_curves(analysis.pr_curves(curves, names), target["pr_curves"]),
        "per_class_ap": plot_per_class_ap(analysis.per_class_ap(curves, names, coco_gt), target["per_class_ap"]),
        "confusion_matrix": plot_confusion_matrix(
            analysis.confusion_matrix(coco_gt, rows, score_threshold=score_threshold), target["confusion_matrix"]),
        "error_breakdown": plot_error_breakdown(
            analysis.coco_error_breakdown(coco_gt, rows, supercategories=supercategories), target["error_breakdown"]),
    }
    if image_paths:
        written["val_predictions"] = prediction_grid(coco_gt, rows, image_paths, target["val_predictions"],
                                                     score_threshold=score_threshold)
    if log_history:
        written["training_curves"] = plot_training_curves(analysis.training_history(log_history),
                                                          target["training_curves"])
    logger.info("plots: %d figures in %s (%.1f s)", len(written), output_dir, time.perf_counter() - start)
    return written


def _mpl_colour(i: int) -> str:
    r, g, b = class_colour(i)
    return f"#{r:02x}{g:02x}{b:02x}"
