"""Evaluate a saved model (or an exported ONNX graph) on a dataset, as training evaluates: the metrics JSON, the
detections as a results file and, on request, the error-analysis figures (`plots.write_plots`). Scoring a results
file is `score_results.evaluate_files`."""

from __future__ import annotations

import logging
import os

from recipe.core.errors import DataError
from recipe.evaluation.coco_eval import METRIC_KEYS, format_per_class
from recipe.evaluation.results_file import results_from_rows, write_results_file
from recipe.evaluation.score_results import check_output_folder, check_output_path, write_json
from recipe.models.loading import add_recipe_loss, load_model
from recipe.models.onnx_detector import is_onnx, sidecar_path

logger = logging.getLogger("recipe")


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
    from recipe.core.stage_timer import time_forward
    from recipe.data.builder import load_detection_dataset
    from recipe.evaluation.coco_eval import gt_from_table
    from recipe.evaluation.metrics import CocoDetectionMetrics

    check_output_path(output)
    check_output_path(predictions_out, "--predictions-out")
    check_output_folder(plots)
    args = evaluation_arguments(batch_size, num_workers)
    with args.main_process_first(desc="building the evaluation table"):
        data = table() if table is not None else load_detection_dataset(
            ann, images, annotation_format, dataset_cache_dir, None, box_convention, bdd_image_size,
            image_check=image_check, skip_bad_images=skip_bad_images)
    model, processor = load_model(model_dir)
    add_recipe_loss(model)  # the evaluation's loss too, as training reports it
    data = match_classes(data, model.config, ann)
    time_forward(model)  # a benchmark's stage times (recipe/core/stage_timer.py); free otherwise
    metrics = CocoDetectionMetrics(gt_from_table(data.dataset, data.categories), [c["id"] for c in data.categories],
                                   score_threshold=score_threshold, backend=backend,
                                   keep_rows=bool(predictions_out or plots))
    source = sidecar_path(model_dir) if is_onnx(model_dir) else os.path.join(model_dir, "preprocessor_config.json")
    dataset = evaluation_dataset(data, processor, source=str(source))
    run_evaluation(model, processor, args, dataset, metrics, top_k=top_k)
    result = {**{k: metrics.last_result[k] for k in METRIC_KEYS}, "per_class": metrics.last_result["per_class"],
              "num_images": metrics.last_result["num_images"], "num_processes": args.world_size}
    if args.process_index == 0:
        if output:
            write_json(output, result)
        if predictions_out:
            write_results_file(predictions_out, export_predictions(
                metrics.last_rows, data.dataset, data.categories, predictions_format, box_convention))
        if plots:
            write_evaluation_plots(plots, metrics, data.dataset)
    return result


def evaluation_arguments(batch_size: int, num_workers: int):
    """DetectionTrainingArguments for evaluation only: no reporting, a scratch output_dir, CPU-only launches
    joined as a gloo group (`launched_without_cuda`)."""
    import tempfile

    import torch

    from recipe.config.load import DetectionTrainingArguments, launched_without_cuda

    return DetectionTrainingArguments(output_dir=tempfile.mkdtemp(prefix="recipe-eval-"), report_to=[],
                                      per_device_eval_batch_size=batch_size, dataloader_num_workers=num_workers,
                                      use_cpu=launched_without_cuda(), dataloader_pin_memory=torch.cuda.is_available())


def match_classes(data, config, source: str):
    """The table in the model's label space, classes matched by NAME (class names are the contract between a model
    and a dataset; ids and order may differ). Categories get the model's ids (config.json `category_ids`, else its
    label ids), so a dataset with the model's classes in any order scores exactly as the model's own evaluation.
    Classes on one side only are said in one line; the dataset's boxes of classes the model lacks leave the ground
    truth. No class in common is an error."""
    import hashlib

    from recipe.data.builder import DetectionData, features_for

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
    from recipe.pipeline.augment import eval_augmentation_for
    from recipe.pipeline.processor_size import rule_of
    from recipe.pipeline.transforms import make_transform

    augmentation = eval_augmentation_for(processor.size, rule=rule_of(processor), source=source)
    return data.dataset.with_transform(make_transform(augmentation))


def run_evaluation(model, processor, args, dataset, metrics, *, top_k: int) -> None:
    """One evaluation pass through the recipe's Trainer; the numbers land in `metrics.last_result`."""
    from recipe.engine.trainer import DetectionTrainer
    from recipe.models.families import collator_for
    from recipe.pipeline.processor_size import canvas_of

    collator = collator_for(model.config, processor, normalise_on_device=True, pad_size=canvas_of(processor))
    trainer = DetectionTrainer(model=model, args=args, eval_dataset=dataset, data_collator=collator,
                               compute_metrics=metrics, top_k=top_k)
    trainer.evaluate()


def write_evaluation_plots(folder: str, metrics, dataset) -> dict[str, str]:
    """The figures of a model's evaluation (training's set without the training curves)."""
    from recipe.evaluation.plots import write_plots

    table = dataset.select_columns(["image_id", "image_path"])
    return write_plots(folder, metrics.coco_gt, metrics.last_rows,
                       image_paths=dict(zip(table["image_id"], table["image_path"])))


def export_predictions(rows, dataset, categories, fmt: str = "coco", box_convention: str = "inclusive") -> list:
    """Kept detections as a COCO results list (the file's own image ids: ints where the file had ints, else its
    strings) or a BDD100K frame list."""
    from recipe.data.results import check_result_format, payload

    check_result_format(fmt)
    orig = dict(zip(dataset["image_id"], dataset["orig_image_id"]))
    as_int = all(o.lstrip("-").isdigit() and int(o) == i for i, o in orig.items())
    return payload(fmt, results_from_rows(rows), names=orig, category_names={c["id"]: c["name"] for c in categories},
                   box_convention=box_convention, coco=lambda: results_from_rows(rows, None if as_int else orig))
