"""Score a results file (COCO results or BDD100K frame list) or a saved model against ground truth; write the
metrics JSON and, on request, the error-analysis figures that training writes (`plots.write_plots`)."""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from .coco_eval import (
    METRIC_KEYS,
    ROW_BOX,
    ROW_CATEGORY,
    ROW_IMAGE_ID,
    ROW_SCORE,
    coco_eval,
    format_per_class,
    quiet_coco,
)
from .data.coco import is_finite_number, is_id, load_json, map_image_ids, parse_coco
from .errors import ConfigError, DataError

logger = logging.getLogger("recipe")


def load_gt_and_predictions(gt: str, predictions: str, fmt: str = "coco", box_convention: str = "inclusive"):
    """-> (COCO ground truth object, COCO results list), both checked (`validate_ground_truth`,
    `validate_results`). BDD100K files are converted with the official rules first."""
    from .data.results import as_coco

    gt_data, preds = as_coco(fmt, load_json(gt), load_json(predictions), box_convention, gt, predictions)
    if not isinstance(gt_data, dict) or "images" not in gt_data:
        raise DataError(f"{gt}: not a COCO ground-truth file (for BDD100K frame lists pass --format bdd100k)")
    if not isinstance(preds, list):
        raise DataError(f"{predictions}: a COCO results file is a JSON list of detections")
    if preds and isinstance(preds[0], dict) and "file_name" in preds[0]:  # written by predict.py
        from .predict import image_ids_by_file_name

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
        _write_json(output, metrics)
    if plots:
        from .plots import write_plots

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


def print_metrics(metrics: dict) -> None:
    print("  ".join(f"{k}={metrics[k]:.4f}" for k in METRIC_KEYS))
    print(format_per_class(metrics))


def evaluate_checkpoint(model_dir: str, images: str, ann: str, output: str | None = None,
                        predictions_out: str | None = None, batch_size: int = 8, num_workers: int = 2,
                        annotation_format: str = "auto", box_convention: str = "inclusive",
                        bdd_image_size=(1280, 720), score_threshold: float = 0.0, top_k: int = 100,
                        dataset_cache_dir: str | None = None, backend: str = "pycocotools",
                        predictions_format: str = "coco", plots: str | None = None,
                        image_check: str = "decode", skip_bad_images: bool = False, table=None) -> dict:
    """Evaluate a saved model folder, or an .onnx file written by detr-export (run with ONNX Runtime), on an
    annotation file (also under `accelerate launch` / `torchrun`).

    Resizes as the folder's `preprocessor_config.json` says. Returns the metrics JSON (12 keys,
    `per_class`, `num_images`, `num_processes`); the main process writes `output`, `predictions_out`
    (a COCO results list, or with predictions_format="bdd100k" a BDD100K frame list with scores) and the
    figures of `plots` (as training does, with the validation images next to their detections). `table`: a callable
    that builds the evaluated table (`--dataset`), instead of `ann` + `images`; `ann` then only names it."""
    from .coco_eval import gt_from_table
    from .data.builder import load_detection_dataset
    from .metrics import CocoDetectionMetrics
    from .timing import time_forward

    check_output_path(output)
    check_output_path(predictions_out, "--predictions-out")
    check_output_folder(plots)
    args = evaluation_arguments(batch_size, num_workers)
    with args.main_process_first(desc="building the evaluation table"):
        data = table() if table is not None else load_detection_dataset(
            ann, images, annotation_format, dataset_cache_dir, None, box_convention, bdd_image_size,
            image_check=image_check, skip_bad_images=skip_bad_images)
    model, processor = load_evaluated_model(model_dir)
    data = match_classes(data, model.config, ann)
    time_forward(model)  # a benchmark's stage times (recipe/timing.py); free otherwise
    metrics = CocoDetectionMetrics(gt_from_table(data.dataset, data.categories), [c["id"] for c in data.categories],
                                   score_threshold=score_threshold, backend=backend,
                                   keep_rows=bool(predictions_out or plots))
    from .onnx_detector import is_onnx, sidecar_path

    source = sidecar_path(model_dir) if is_onnx(model_dir) else os.path.join(model_dir, "preprocessor_config.json")
    dataset = evaluation_dataset(data, processor, source=str(source))
    run_evaluation(model, processor, args, dataset, metrics, top_k=top_k)
    result = {**{k: metrics.last_result[k] for k in METRIC_KEYS}, "per_class": metrics.last_result["per_class"],
              "num_images": metrics.last_result["num_images"], "num_processes": args.world_size}
    if args.process_index == 0:
        if output:
            _write_json(output, result)
        if predictions_out:
            _write_json(predictions_out, export_predictions(metrics.last_rows, data.dataset, data.categories,
                                                            predictions_format, box_convention))
        if plots:
            write_evaluation_plots(plots, metrics, data.dataset)
    return result


def evaluation_arguments(batch_size: int, num_workers: int):
    """DetectionTrainingArguments for evaluation only: no reporting, a scratch output_dir, CPU-only launches
    joined as a gloo group (`launched_without_cuda`)."""
    import tempfile

    import torch

    from .config import DetectionTrainingArguments, launched_without_cuda

    return DetectionTrainingArguments(output_dir=tempfile.mkdtemp(prefix="recipe-eval-"), report_to=[],
                                      per_device_eval_batch_size=batch_size, dataloader_num_workers=num_workers,
                                      use_cpu=launched_without_cuda(), dataloader_pin_memory=torch.cuda.is_available())


def load_evaluated_model(model_dir: str):
    """-> (model with the recipe's loss, image processor)."""
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    from .families import family_of, loss_weights
    from .losses import install_recipe_loss
    from .onnx_detector import is_onnx, load_onnx_detector

    if is_onnx(model_dir):  # an exported graph: ONNX Runtime in the model's place, no loss
        model, processor, _ = load_onnx_detector(model_dir)
    else:
        model = AutoModelForObjectDetection.from_pretrained(model_dir)
        processor = AutoImageProcessor.from_pretrained(model_dir)
    family = family_of(model.config.model_type)
    if not is_onnx(model_dir):
        install_recipe_loss(model, family, loss_weights(family))
    return model, processor


def match_classes(data, config, source: str):
    """The table in the model's label space, classes matched by NAME (class names are the contract between a model
    and a dataset; ids and order may differ). Categories get the model's ids (config.json `category_ids`, else its
    label ids), so a dataset with the model's classes in any order scores exactly as the model's own evaluation.
    Classes on one side only are said in one line; the dataset's boxes of classes the model lacks leave the ground
    truth. No class in common is an error."""
    import hashlib

    from .data.builder import DetectionData, features_for

    names = [config.id2label[i] for i in range(len(config.id2label))]
    ids = [int(c) for c in (getattr(config, "category_ids", None) or range(len(names)))]
    data_names = [c["name"] for c in data.categories]
    if data_names == names:
        return data
    common = [n for n in names if n in data_names]
    if not common:
        raise DataError(f"{source}: no class in common with the model (dataset: {data_names}; model: {names}); "
                        "evaluate on a dataset of the model's classes")
    model_only, data_only = [n for n in names if n not in data_names], [n for n in data_names if n not in names]
    if model_only or data_only:
        logger.warning("%s: evaluated on the %d classes in common; the model lacks %s, the dataset lacks %s",
                       source, len(common), data_only or "none", model_only or "none")
    to_model = {j: names.index(n) for j, n in enumerate(data_names) if n in names}
    supers = {c["name"]: c["supercategory"] for c in data.categories if "supercategory" in c}
    categories = [{"id": ids[i], "name": n, **({"supercategory": supers[n]} if n in supers else {})}
                  for i, n in enumerate(names)]
    fingerprint = hashlib.blake2b(f"{data.dataset._fingerprint}|{to_model}|{names}".encode(), digest_size=16)
    table = data.dataset.map(_to_model_labels, fn_kwargs={"to_model": to_model}, features=features_for(names),
                             new_fingerprint=fingerprint.hexdigest(), desc="classes by name")
    dropped = sum(len(o["category"]) for o in data.dataset.with_format(None)["objects"]) - \
        sum(len(o["category"]) for o in table.with_format(None)["objects"])
    return DetectionData(table, categories, {**data.report, "boxes_of_classes_the_model_lacks": dropped},
                         data.from_cache)


def _to_model_labels(row: dict, to_model: dict) -> dict:
    objs = row["objects"]
    keep = [k for k, c in enumerate(objs["category"]) if c in to_model]
    out = {key: [values[k] for k in keep] for key, values in objs.items()}
    out["category"] = [to_model[c] for c in out["category"]]
    return {"objects": out}


def evaluation_dataset(data, processor, *, source: str):
    """The table with the eval transform: each image resized to the size the processor gives it (`source`, the
    processor's file, is named in the error for a `size` it does not resize to)."""
    from .processor_size import rule_of
    from .transforms import eval_augmentation_for, make_transform

    augmentation = eval_augmentation_for(processor.size, rule=rule_of(processor), source=source)
    return data.dataset.with_transform(make_transform(augmentation))


def run_evaluation(model, processor, args, dataset, metrics, *, top_k: int) -> None:
    """One evaluation pass through the recipe's Trainer; the numbers land in `metrics.last_result`."""
    from .families import collator_for
    from .processor_size import canvas_of
    from .trainer import DetectionTrainer

    collator = collator_for(model.config, processor, normalise_on_device=True, pad_size=canvas_of(processor))
    trainer = DetectionTrainer(model=model, args=args, eval_dataset=dataset, data_collator=collator,
                               compute_metrics=metrics, top_k=top_k)
    trainer.evaluate()


def write_evaluation_plots(folder: str, metrics, dataset) -> dict[str, str]:
    """The figures of a model's evaluation (training's set without the training curves)."""
    from .plots import write_plots

    table = dataset.select_columns(["image_id", "image_path"])
    return write_plots(folder, metrics.coco_gt, metrics.last_rows,
                       image_paths=dict(zip(table["image_id"], table["image_path"])))


def export_predictions(rows, dataset, categories, fmt: str = "coco", box_convention: str = "inclusive") -> list:
    """Kept detections as a COCO results list (the file's own image ids) or a BDD100K frame list."""
    from .data.results import check_result_format, payload

    check_result_format(fmt)
    results = [{"image_id": int(r[ROW_IMAGE_ID]), "category_id": int(r[ROW_CATEGORY]),
                "bbox": [float(v) for v in r[ROW_BOX]], "score": float(r[ROW_SCORE])} for r in rows]
    names = dict(zip(dataset["image_id"], dataset["orig_image_id"]))
    return payload(fmt, results, names=names, category_names={c["id"]: c["name"] for c in categories},
                   box_convention=box_convention, coco=lambda: results_file(rows, dataset))


def results_file(rows, dataset) -> list[dict]:
    """Detection rows (image_id, x, y, w, h, score, category_id) -> a COCO results list with the file's own
    image ids (ints where the file had ints, else the original strings)."""
    orig = dict(zip(dataset["image_id"], dataset["orig_image_id"]))
    as_int = all(o.lstrip("-").isdigit() and int(o) == i for i, o in orig.items())
    return [{"image_id": int(r[ROW_IMAGE_ID]) if as_int else orig[int(r[ROW_IMAGE_ID])],
             "category_id": int(r[ROW_CATEGORY]), "bbox": [round(float(v), 3) for v in r[ROW_BOX]],
             "score": round(float(r[ROW_SCORE]), 5)} for r in rows]


def _write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
