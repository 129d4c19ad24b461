"""Evaluate a saved model (or an exported ONNX graph) on a dataset, as training evaluates: the metrics JSON, the
detections as a results file and, on request, the error-analysis figures (`plots.write_plots`). Scoring a results
file is `score_results.evaluate_files`."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass

from recipe.core.distributed import is_main_process
from recipe.core.errors import DataError
from recipe.data.source import DataSource, data_source, load_table
from recipe.evaluation.coco_eval import METRIC_KEYS, format_per_class
from recipe.evaluation.results_writer import results_from_rows, write_results_file
from recipe.evaluation.score_results import check_output_folder, check_output_path, write_json
from recipe.models.exported import is_exported, sidecar_path
from recipe.models.loading import add_recipe_loss, load_model

logger = logging.getLogger("recipe")


def print_metrics(metrics: dict) -> None:
    print("  ".join(f"{k}={metrics[k]:.4f}" for k in METRIC_KEYS))
    print(format_per_class(metrics))


@dataclass(frozen=True)
class EvaluateRequest:
    """One evaluation of a model: what to evaluate, on what, and what to write.

    `model`: a saved model folder, a checkpoint folder or an .onnx file written by detr-export (run with ONNX
    Runtime). `source`: the data (`recipe.data.source`). The main process writes `output` (the metrics JSON),
    `predictions_out` (a COCO results list, or with predictions_format="bdd100k" a BDD100K frame list with scores)
    and the figures of `plots` (as training does, with the validation images next to their detections)."""

    model: str
    source: DataSource
    output: str | None = None
    predictions_out: str | None = None
    predictions_format: str = "coco"
    plots: str | None = None
    batch_size: int = 8
    num_workers: int = 2
    score_threshold: float = 0.0
    top_k: int = 100
    backend: str = "pycocotools"
    image_check: str = "decode"
    skip_bad_images: bool = False


def evaluate_checkpoint(model: str, images: str | None = None, ann: str | None = None, *,
                        source: DataSource | None = None, annotation_format: str = "auto",
                        box_convention: str = "inclusive", bdd_image_size=(1280, 720),
                        dataset_cache_dir: str | None = None, **options) -> dict:
    """Evaluate `model` on an annotation file and its images (or on `source`); `options`: the fields of
    `EvaluateRequest`. -> the metrics (see `evaluate_request`)."""
    source = source or data_source(annotation_file=ann, image_root=images, annotation_format=annotation_format,
                                   box_convention=box_convention, bdd_image_size=bdd_image_size,
                                   cache_dir=dataset_cache_dir, split="validation")
    return evaluate_request(EvaluateRequest(model, source, **options))


def evaluate_request(request: EvaluateRequest) -> dict:
    """Evaluate as training evaluates (also under `accelerate launch` / `torchrun`), resized as the model folder's
    `preprocessor_config.json` says. -> the metrics JSON (12 keys, `per_class`, `num_images`, `num_processes`)."""
    from recipe.core.stage_timer import time_forward
    from recipe.evaluation.coco_eval import gt_from_table
    from recipe.evaluation.metrics import CocoDetectionMetrics

    r = request
    check_output_path(r.output)
    check_output_path(r.predictions_out, "--predictions-out")
    check_output_folder(r.plots)
    args = evaluation_arguments(r.batch_size, r.num_workers)
    with args.main_process_first(desc="building the evaluation table"):
        data = load_table(r.source, image_check=r.image_check, skip_bad_images=r.skip_bad_images)
    model, processor = load_model(r.model)
    add_recipe_loss(model)  # the evaluation's loss too, as training reports it
    data = match_classes(data, model.config, r.source.name)
    time_forward(model)  # a benchmark's stage times (recipe/core/stage_timer.py); free otherwise
    metrics = CocoDetectionMetrics(gt_from_table(data.dataset, data.categories), [c["id"] for c in data.categories],
                                   score_threshold=r.score_threshold, backend=r.backend,
                                   keep_rows=bool(r.predictions_out or r.plots))
    processor_file = sidecar_path(r.model) if is_exported(r.model) else \
        os.path.join(r.model, "preprocessor_config.json")
    dataset = evaluation_dataset(data, processor, source=str(processor_file))
    run_evaluation(model, processor, args, dataset, metrics, top_k=r.top_k)
    result = {**{k: metrics.last_result[k] for k in METRIC_KEYS}, "per_class": metrics.last_result["per_class"],
              "num_images": metrics.last_result["num_images"], "num_processes": args.world_size}
    if is_main_process():
        if r.output:
            write_json(r.output, result)
        if r.predictions_out:
            rows = export_predictions(metrics.last_rows, data.dataset, data.categories, r.predictions_format,
                                      r.source.options.box_convention)
            write_results_file(r.predictions_out, rows)
        if r.plots:
            write_evaluation_plots(r.plots, metrics, data.dataset)
    return result


def evaluate(data_args, model_args, eval_args, script_args, tile_args=None) -> dict:
    """What `detr-evaluate` asks (see `config.load.parse_evaluate_args` for the two modes): score a results file
    (--predictions against --gt), or evaluate a model on --dataset's split or an annotation file and its images.
    Tiled (`tile_args` on) is `inference.tiled_evaluation.evaluate_command`, a layer above (detr-evaluate runs it)."""
    if tile_args is not None and tile_args.on:
        raise ValueError("tiled evaluation runs through recipe.inference.tiled_evaluation.evaluate_command")
    if script_args.predictions:
        from recipe.data.files import detect_format
        from recipe.evaluation.score_results import evaluate_files

        auto = data_args.annotation_format == "auto"
        fmt = detect_format(data_args.val_ann) if auto else data_args.annotation_format
        return evaluate_files(data_args.val_ann, script_args.predictions, script_args.output, fmt,
                              data_args.box_convention, eval_args.metric_backend, plots=script_args.plots)
    return evaluate_request(request_from_args(data_args, model_args, eval_args, script_args))


def request_from_args(data_args, model_args, eval_args, script_args) -> EvaluateRequest:
    """detr-evaluate's model mode as an `EvaluateRequest`."""
    from recipe.models.sources import is_offline

    source = data_source(data_args, annotation_file=data_args.val_ann, image_root=data_args.val_img,
                         annotation_format=data_args.annotation_format, box_convention=data_args.box_convention,
                         bdd_image_size=data_args.bdd_image_size, split=script_args.split,
                         cache_dir=data_args.dataset_cache_dir, offline=is_offline(model_args))
    return EvaluateRequest(
        model_args.model_name_or_path, source, output=script_args.output, predictions_out=script_args.predictions_out,
        predictions_format=script_args.predictions_format, plots=script_args.plots,
        batch_size=script_args.per_device_eval_batch_size, num_workers=script_args.dataloader_num_workers,
        score_threshold=eval_args.score_threshold, top_k=eval_args.top_k, backend=eval_args.metric_backend,
        image_check=data_args.image_check, skip_bad_images=data_args.skip_bad_images)


def evaluation_arguments(batch_size: int, num_workers: int):
    """DetectionTrainingArguments for evaluation only: no reporting, a scratch output_dir, CPU-only launches
    joined as a gloo group (`launched_without_cuda`)."""
    import tempfile

    import torch

    from recipe.config.load import DetectionTrainingArguments
    from recipe.config.parser import launched_without_cuda

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
    try:
        trainer.evaluate()
    finally:  # evaluation_arguments' scratch folder: nothing in it is the user's
        shutil.rmtree(args.output_dir, ignore_errors=True)


def write_evaluation_plots(folder: str, metrics, dataset) -> dict[str, str]:
    """The figures of a model's evaluation (training's set without the training curves)."""
    from recipe.evaluation.plots import write_plots

    table = dataset.select_columns(["image_id", "image_path"])
    return write_plots(folder, metrics.coco_gt, metrics.last_rows,
                       image_paths=dict(zip(table["image_id"], table["image_path"])))


def export_predictions(rows, dataset, categories, fmt: str = "coco", box_convention: str = "inclusive") -> list:
    """Kept detections as a COCO results list (the file's own image ids: ints where the file had ints, else its
    strings) or a BDD100K frame list."""
    from recipe.data.result_formats import check_result_format, payload

    check_result_format(fmt)
    orig = dict(zip(dataset["image_id"], dataset["orig_image_id"]))
    as_int = all(o.lstrip("-").isdigit() and int(o) == i for i, o in orig.items())
    return payload(fmt, results_from_rows(rows), names=orig, category_names={c["id"]: c["name"] for c in categories},
                   box_convention=box_convention, coco=lambda: results_from_rows(rows, None if as_int else orig))
