"""Score a results file (COCO results, predict's file with file names, or a BDD100K frame list) against ground truth:
both files checked by the training reader's rules, then COCOeval; the metrics JSON and, on request, the
error-analysis figures that training writes (`plots.write_plots`). Output paths are checked before any work."""

from __future__ import annotations

import json
import os

import numpy as np

from recipe.core.errors import ConfigError, DataError
from recipe.data.coco import is_finite_number, is_id, load_json, map_image_ids, parse_coco
from recipe.evaluation.coco_eval import coco_eval, quiet_coco


def load_gt_and_predictions(gt: str, predictions: str, fmt: str = "coco", box_convention: str = "inclusive"):
    """-> (COCO ground truth object, COCO results list), both checked (`validate_ground_truth`,
    `validate_results`). BDD100K files are converted with the official rules first."""
    from recipe.data.result_formats import as_coco

    gt_data, preds = as_coco(fmt, load_json(gt), load_json(predictions), box_convention, gt, predictions)
    if not isinstance(gt_data, dict) or "images" not in gt_data:
        raise DataError(f"{gt}: not a COCO ground-truth file (for BDD100K frame lists pass --format bdd100k)")
    if not isinstance(preds, list):
        raise DataError(f"{predictions}: a COCO results file is a JSON list of detections")
    if preds and isinstance(preds[0], dict) and "file_name" in preds[0]:  # written by predict.py
        from recipe.evaluation.results_writer import image_ids_by_file_name

        preds = image_ids_by_file_name(preds, gt_data, source=str(predictions))
    gt_data = validate_ground_truth(gt_data, gt)
    return quiet_coco(gt_data), validate_results(preds, gt_data, predictions)


def validate_ground_truth(data: dict, source) -> dict:
    """A clean COCO ground truth for COCOeval, by the training reader's rules (`parse_coco`): unique image
    and annotation ids (COCOeval matches by id: duplicates silently mis-score), finite boxes, known
    categories and images, `iscrowd` 0/1 (the string "0" is 0), `area` = w x h where missing, ids
    assigned where missing."""
    images, anns, categories, _ = parse_coco(data, source)
    return {"images": [{k: v for k, v in img.items() if v is not None} for img in images],
            "annotations": anns, "categories": categories}


def validate_results(preds: list, gt: dict, source) -> list:
    """Every detection {image_id, category_id, bbox `xywh_abs`, score}: an image and a category of the ground
    truth, 4 finite numbers with w, h >= 0, a finite score. The first bad row is an error naming it."""
    image_ids, cat_ids = {img["id"] for img in gt["images"]}, {c["id"] for c in gt["categories"]}
    for n, row in enumerate(preds):
        if not isinstance(row, dict):
            raise DataError(f"{source}: detection [{n}] is not an object {{image_id, category_id, bbox, score}}: "
                            f"{row!r:.80}")
        what = f"{source}: detection [{n}] (image_id {row.get('image_id')!r})"
        if not (is_id(row.get("image_id")) and row["image_id"] in image_ids):
            raise DataError(f"{what}: image_id is not in the ground truth's images (ids are compared as written: "
                            "1 and \"1\" differ)")
        if not (is_id(row.get("category_id")) and row["category_id"] in cat_ids):
            raise DataError(f"{what}: category_id {row.get('category_id')!r} is not in the ground truth's "
                            f"categories {sorted(cat_ids)}")
        bbox = row.get("bbox")
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(map(is_finite_number, bbox))
                and bbox[2] >= 0 and bbox[3] >= 0):
            raise DataError(f"{what}: bbox must be 4 finite numbers [x, y, w, h] with w, h >= 0, got {bbox!r:.80}")
        if not is_finite_number(row.get("score")):
            raise DataError(f"{what}: score must be a finite number, got {row.get('score')!r}")
    return preds


def check_output_path(path: str | None, flag: str = "--output") -> None:
    """Before any work: an output that is a folder (or inside a file) would fail only at the very end."""
    if not path:
        return
    if os.path.isdir(path):
        raise ConfigError(f"{flag} {path}: is a folder; give a file name, e.g. {os.path.join(path, 'metrics.json')}")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")


def check_output_folder(path: str | None, flag: str = "--plots") -> None:
    """Before any work: a folder to write into must not be an existing file."""
    if path and os.path.isfile(path):
        raise ConfigError(f"{flag} {path}: is a file; give a folder to write the figures into")


def evaluate_files(gt: str, predictions: str, output: str | None = None, fmt: str = "coco",
                   box_convention: str = "inclusive", backend: str = "pycocotools", *,
                   plots: str | None = None) -> dict:
    """-> {12 metric keys (0..1, -1 where COCOeval has nothing to score), per_class: {name: AP or None}}.

    With `plots` (a folder), also the error-analysis figures, each with its numbers as JSON, that training
    writes (`plots.write_plots`: PR curves, per-class AP, confusion matrix, COCO error breakdown)."""
    check_output_path(output)
    check_output_folder(plots)
    coco_gt, results = load_gt_and_predictions(gt, predictions, fmt, box_convention)
    metrics = coco_eval(coco_gt, results, backend=backend)
    if output:
        write_json(output, metrics)
    if plots:
        from recipe.evaluation.plots import write_plots

        write_plots(plots, *result_rows(coco_gt, results))
    return metrics


def result_rows(coco_gt, results: list[dict]):
    """-> (ground truth, result rows [N, 7]) for the error analysis, which takes rows (numeric image ids): a
    ground truth with string image ids is renumbered as the training reader numbers them (`map_image_ids`)."""
    ids = map_image_ids([img["id"] for img in coco_gt.dataset["images"]])
    if any(k != v for k, v in ids.items()):
        data = coco_gt.dataset
        coco_gt = quiet_coco({**data, "images": [{**img, "id": ids[img["id"]]} for img in data["images"]],
                              "annotations": [{**a, "image_id": ids[a["image_id"]]} for a in data["annotations"]]})
    rows = np.array([[ids[r["image_id"]], *r["bbox"], r["score"], r["category_id"]] for r in results],
                    dtype=np.float64).reshape(-1, 7)
    return coco_gt, rows


def write_json(path: str, obj) -> None:
    """A metrics file (indented), folders made as needed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
