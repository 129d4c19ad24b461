"""Fine-tune a DETR-family detector: the storyboard that scripts/train.py runs.

Each step is a named function in data-flow order; `run()` only calls them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import torch
from transformers import set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .card import write_model_card
from .coco_eval import gt_from_table
from .config import EvalArguments
from .data.builder import DetectionData, load_detection_dataset
from .data.sanitize import format_report, save_reports
from .errors import ConfigError, DataError, TrainingInterrupted
from .families import collator_for, size_multiple
from .hub import push_folder
from .metrics import CocoDetectionMetrics
from .modeling import check_model_available, is_offline, load_model_and_processor
from .processor_size import rule_of
from .runtime import check_world_size, resolve_precision
from .trainer import (
    AugmentationEpochCallback,
    DetectionTrainer,
    InterruptCallback,
    NoDuplicateFinalEvaluationCallback,
    NonFiniteLossCallback,
)
from .transforms import AugmentationSeeds, build_augmentation, eval_augmentation_for, make_transform

logger = logging.getLogger("recipe")


def run(data_args, model_args, train_args, eval_args=None, *, callbacks=()) -> dict:
    """Train (and evaluate, if a validation set is given). Returns the final eval metrics (or {}).

    The arguments are what `recipe.config.parse_config` returns: `run(*parse_config(argv))`; `callbacks`
    are extra `transformers.TrainerCallback`s (e.g. early stopping, a step timer)."""
    eval_args = eval_args if eval_args is not None else EvalArguments()
    precision = prepare_runtime(train_args)
    prepare_output_dir(train_args)
    check_model_available(model_args)  # before any data is read
    train, val = load_splits(data_args, train_args, offline=is_offline(model_args))
    report_data(data_args, train_args, train, val)
    set_seed(train_args.seed)
    model, processor = build_model(model_args, data_args, train.categories)
    seeds = AugmentationSeeds(train_args.seed)
    train_ds, eval_ds = build_datasets(data_args, processor, train, val, seeds=seeds,
                                       epochs=training_epochs(train_args, len(train.dataset)),
                                       cut_short=bool(train_args.max_steps and train_args.max_steps > 0),
                                       batch_geometry=train_args.device.type != "cpu")
    metrics = build_metrics(eval_args, val)
    if train_args.preflight_steps:
        preflight(model, processor, train, data_args, model_args, train_args, eval_args)
    push = take_hub_push(train_args)
    logger.info("precision: %s; train images: %d; val images: %d", precision, len(train_ds),
                len(eval_ds) if eval_ds is not None else 0)
    trainer = DetectionTrainer(model=model, args=train_args, train_dataset=train_ds, eval_dataset=eval_ds,
                               data_collator=collator_for(model.config, processor, normalise_on_device=True),
                               processing_class=processor, compute_metrics=metrics,
                               callbacks=[NonFiniteLossCallback(), AugmentationEpochCallback(seeds),
                                          NoDuplicateFinalEvaluationCallback(),
                                          *early_stopping(train_args), *callbacks],
                               model_args=model_args, top_k=eval_args.top_k)
    final = train_and_evaluate(trainer, train_args)
    save_outputs(trainer, data_args, metrics, final, precision)
    if push and trainer.is_world_process_zero():
        push_folder(train_args.output_dir, push["repo_id"], token=push["token"], private=push["private"])
    return final


def prepare_runtime(train_args) -> str:
    """Precision (resolving --amp) and the process group check. -> "fp32" | "bf16" | "fp16"."""
    precision = resolve_precision(train_args)
    check_world_size(train_args)
    if not torch.cuda.is_available():
        train_args.dataloader_pin_memory = False  # nothing to pin to; avoids a warning per dataloader
    return precision


def prepare_output_dir(train_args) -> None:
    """`--resume_from_checkpoint last|auto` -> the newest complete checkpoint in output_dir (auto: none is a fresh
    start; see `newest_complete_checkpoint`).
    A new run into an output_dir that holds checkpoints is refused: its checkpoints would mix with the old
    ones (and `last` would later pick the wrong run), unless `--overwrite_output_dir`, which deletes them."""
    out = train_args.output_dir
    folders = checkpoint_folders(out) if out and os.path.isdir(out) else []
    resume = train_args.resume_from_checkpoint
    if resume in ("last", "auto"):
        last = newest_complete_checkpoint(out) if folders else None
        if last is None and resume == "last":
            raise ConfigError(f"--resume_from_checkpoint last: no complete checkpoint-<step> folder in {out}; "
                              "leave the flag out to start a new run (or use auto)")
        train_args.resume_from_checkpoint = last
        if last is not None:
            logger.warning("resuming from %s", last)
        return
    if resume is not None or not folders:
        return
    # transformers 5 dropped TrainingArguments.overwrite_output_dir; the recipe's arguments declare it.
    if not getattr(train_args, "overwrite_output_dir", False):
        raise ConfigError(f"{out} already holds checkpoints (newest: {os.path.basename(folders[0])}); pass "
                          "--resume_from_checkpoint last to continue that run, --overwrite_output_dir true to "
                          "delete them and start over, or another --output_dir")
    with train_args.main_process_first(desc="removing old checkpoints"):
        if train_args.should_save:
            for path in checkpoint_folders(out):
                logger.warning("--overwrite_output_dir: deleting %s", path)
                shutil.rmtree(path)


def checkpoint_folders(folder: str) -> list[str]:
    """The checkpoint-<step> folders in `folder`, newest (highest step) first."""
    found = []
    for name in os.listdir(folder):
        match = re.fullmatch(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)", name)
        if match and os.path.isdir(os.path.join(folder, name)):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return [path for _, path in sorted(found, reverse=True)]


def newest_complete_checkpoint(folder: str) -> str | None:
    """The newest checkpoint-<step> folder holding a readable trainer_state.json, which the Trainer writes last
    (after weights, optimizer, scheduler and RNG states). A newer folder without it was cut off while being
    saved (a killed run) and is passed over, with a warning."""
    for path in checkpoint_folders(folder):
        try:
            json.loads(Path(path, TRAINER_STATE_NAME).read_text())
            return path
        except (OSError, ValueError):
            logger.warning("%s is incomplete (no readable %s: the run stopped while saving it); passing over it",
                           path, TRAINER_STATE_NAME)
    return None


def load_splits(data_args, train_args, *, offline: bool = False) -> tuple[DetectionData, DetectionData | None]:
    """The training and (optional) validation tables: of `--dataset`, or of the annotation files (the demo data is
    generated first if asked)."""
    if data_args.dataset:
        return load_dataset_argument(data_args, train_args, offline)
    if not data_args.train_ann or not data_args.train_img:
        prepare_demo_data(data_args)
    elif data_args.demo_data:
        with train_args.main_process_first(desc="demo data"):
            prepare_demo_data(data_args)
    if not data_args.train_ann or not data_args.train_img:
        raise DataError("no training data: set train_img and train_ann (or --train-img/--train-ann)")
    train = load_split(data_args, train_args, data_args.train_img, data_args.train_ann, "train")
    if not data_args.val_ann:
        if train_args.early_stopping_patience is not None:
            raise ConfigError("early_stopping_patience needs a validation set (val_img and val_ann) to watch eval_map")
        train_args.eval_strategy = "no"
        return train, None
    val = load_split(data_args, train_args, data_args.val_img, data_args.val_ann, "validation")
    if val.categories != train.categories:
        raise DataError(f"{data_args.val_ann}: categories differ from {data_args.train_ann}; "
                        "both files need the same categories in the same order")
    return train, val


def load_dataset_argument(data_args, train_args, offline: bool) -> tuple[DetectionData, DetectionData | None]:
    from .data.splits import load_named

    with train_args.main_process_first(desc=f"building the tables of {data_args.dataset}"):
        tables = load_named(data_args, offline=offline, cache_dir=data_args.dataset_cache_dir,
                            subset=data_args.subset, image_check=data_args.image_check,
                            skip_bad_images=data_args.skip_bad_images)
    val = tables.get("validation")
    if val is None:
        if train_args.early_stopping_patience is not None:
            raise ConfigError(f"early_stopping_patience needs a validation set; {data_args.dataset} has none "
                              "(set train_val_split above 0)")
        train_args.eval_strategy = "no"
    return tables["train"], val


def load_split(data_args, train_args, img, ann, name) -> DetectionData:
    with train_args.main_process_first(desc=f"building the {name} table"):
        return load_detection_dataset(ann, img, data_args.annotation_format, data_args.dataset_cache_dir,
                                      data_args.subset, data_args.box_convention, data_args.bdd_image_size,
                                      image_check=data_args.image_check, skip_bad_images=data_args.skip_bad_images)


def prepare_demo_data(data_args) -> None:
    """Generate the demo scenes into `demo_data` when a split reads from there and they are missing (a demo.yaml
    pointed at your own data generates nothing)."""
    if not data_args.demo_data:
        return
    root = Path(data_args.demo_data).resolve()
    paths = [p for p in (data_args.train_img, data_args.train_ann, data_args.val_img, data_args.val_ann) if p]
    if not any(root == Path(p).resolve() or root in Path(p).resolve().parents for p in paths):
        return
    if not (root / "train" / "annotations.json").is_file():
        from .data.synthetic import make_demo_dataset

        logger.warning("demo data not found: generating it in %s", data_args.demo_data)
        make_demo_dataset(data_args.demo_data)


def report_data(data_args, train_args, train, val) -> None:
    """Print the sanitizing report of each split and save it as data_report.json (main process)."""
    if train_args.process_index != 0:
        return
    reports = {"train": train.report, **({"validation": val.report} if val else {})}
    sources = {"train": data_args.dataset or data_args.train_ann, "validation": data_args.dataset or data_args.val_ann}
    for split, report in reports.items():
        print(format_report(report, f"{split} ({sources[split]})"))
    save_reports(reports, train_args.output_dir)


def build_model(model_args, data_args, categories: list[dict]):
    """-> (model, image processor) for the data's classes (contiguous labels 0..N-1)."""
    id2label = {i: c["name"] for i, c in enumerate(categories)}
    model, processor = load_model_and_processor(model_args, id2label)
    # The dataset's category id of each label, saved in config.json: predict.py writes results in these ids.
    model.config.category_ids = [int(c["id"]) for c in categories]
    if any("supercategory" in c for c in categories):  # kept with the class list, as in the COCO file
        model.config.supercategories = [c.get("supercategory") for c in categories]
    # The saved processor then resizes like our eval transform (for pipeline() and evaluate.py).
    square = data_args.resize == "square"
    side = data_args.eval_size if square else data_args.longest_edge
    processor.size = ({"height": side, "width": side} if square else
                      {"shortest_edge": data_args.eval_size, "longest_edge": side})
    multiple = size_multiple(model.config)
    padded = -(-side // multiple) * multiple  # as the collator pads: to a multiple the backbone/encoder can take
    if multiple > 1 and not (square and padded == side):
        processor.do_pad, processor.pad_size = True, {"height": padded, "width": padded}
    elif square:
        processor.do_pad = False  # every image is already side x side
    return model, processor


def training_epochs(train_args, num_images: int) -> int:
    """The epochs the Trainer will start: ceil(num_train_epochs), or with max_steps the epochs those steps reach
    (the Trainer's count: batches per process // gradient accumulation steps per epoch)."""
    per_process = -(-num_images // max(1, train_args.world_size))
    batches = -(-per_process // train_args.per_device_train_batch_size)
    steps_per_epoch = max(1, batches // train_args.gradient_accumulation_steps)
    if train_args.max_steps and train_args.max_steps > 0:
        return -(-train_args.max_steps // steps_per_epoch)
    return math.ceil(train_args.num_train_epochs)


def build_datasets(data_args, processor, train, val, *, seeds: AugmentationSeeds, epochs: int | None = None,
                   cut_short: bool = False, batch_geometry: bool = True):
    """The tables with their on-the-fly transforms: (train dataset, eval dataset or None).

    `seeds`: the training augmentation's streams, per image and epoch (from --seed). `epochs`: the run's epoch
    count, for the final phase without augmentation (`no_aug_epochs`: from epoch `epochs - no_aug_epochs` on,
    training images get the evaluation resize only; a run `cut_short` by max_steps to fewer epochs skips it, with a
    warning). `batch_geometry`: flip and resize on the batch where the model runs (`make_transform`); False where
    that is the CPU, which has no device to offload to: the loader's cv2 flip and resize cost ~1.9 ms per image
    against 5.8-8.4 ms in torch on the batch, with the same draws and boxes (tests/test_collate.py)."""
    sizes = dict(shortest_edges=data_args.shortest_edges, longest_edge=data_args.longest_edge,
                 eval_size=data_args.eval_size, resize=data_args.resize)
    plain, plain_from = None, None
    if data_args.no_aug_epochs and (epochs is None or data_args.no_aug_epochs >= epochs):
        if not cut_short:
            raise ConfigError(f"no_aug_epochs {data_args.no_aug_epochs} must be fewer than the run's epochs "
                              f"({epochs}); lower it or train longer")
        logger.warning("no_aug_epochs %d: this run (max_steps) has %s epochs; no final phase without augmentation",
                       data_args.no_aug_epochs, epochs)
    elif data_args.no_aug_epochs:
        plain, plain_from = evaluation_augmentation(processor), epochs - data_args.no_aug_epochs
        logger.info("epochs %d-%d of %d train without augmentation (no_aug_epochs %d)", plain_from + 1, epochs,
                    epochs, data_args.no_aug_epochs)
    train_ds = train.dataset.with_transform(make_transform(build_augmentation(
        True, hflip_prob=data_args.hflip_prob, crop_prob=data_args.crop_prob,
        color_jitter_prob=data_args.color_jitter_prob, **sizes), seeds=seeds, batch_geometry=batch_geometry,
        plain=plain, plain_from_epoch=plain_from))
    if val is None:
        return train_ds, None
    return train_ds, val.dataset.with_transform(make_transform(evaluation_augmentation(processor)))


def evaluation_augmentation(processor):
    """Evaluation (and the final no-augmentation phase) resizes as the saved processor's `size` (set in
    `build_model`) says, with its rounding, so that evaluate.py and predict.py on the saved model give this
    evaluation's numbers."""
    return eval_augmentation_for(processor.size, rule=rule_of(processor), source="the image processor (--eval_size)")


def preflight(model, processor, train, data_args, model_args, train_args, eval_args) -> dict:
    """`--preflight_steps`: memorise a few training images first (`recipe.preflight`); its figures are added to
    data_report.json."""
    from .preflight import run_preflight

    result = run_preflight(
        model, processor, train, train_args, model_args, steps=train_args.preflight_steps,
        collator_factory=lambda: collator_for(model.config, processor, normalise_on_device=True),
        transform_factory=lambda: make_transform(evaluation_augmentation(processor)),
        metrics_factory=lambda subset: metrics_for(eval_args, subset, train.categories))
    if train_args.process_index == 0:
        path = Path(train_args.output_dir) / "data_report.json"
        report = json.loads(path.read_text()) if path.is_file() else {}
        save_reports({**report, "preflight": result}, train_args.output_dir)
    return result


def early_stopping(train_args) -> list:
    """transformers' EarlyStoppingCallback on eval_map when `early_stopping_patience` is set (its arguments set
    load_best_model_at_end, so the best checkpoint's model, EMA included, is the one saved)."""
    if train_args.early_stopping_patience is None:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=train_args.early_stopping_patience)]


def build_metrics(eval_args, val) -> CocoDetectionMetrics | None:
    if val is None:
        return None
    return metrics_for(eval_args, val.dataset, val.categories)


def metrics_for(eval_args, table, categories: list[dict]) -> CocoDetectionMetrics:
    """The compute_metrics hook scoring `table`'s images against their own ground truth."""
    return CocoDetectionMetrics(gt_from_table(table, categories), [c["id"] for c in categories],
                                score_threshold=eval_args.score_threshold, backend=eval_args.metric_backend)


def train_and_evaluate(trainer, train_args) -> dict:
    """Train, save the model, then one full evaluation (if there is a validation set), keeping its detections
    for the plots."""
    interrupt = InterruptCallback()
    trainer.add_callback(interrupt)
    interrupt.install()
    try:
        trainer.train(resume_from_checkpoint=train_args.resume_from_checkpoint)
    finally:
        interrupt.uninstall()
    if interrupt.stopped_at is not None:
        raise TrainingInterrupted(
            f"interrupted at step {interrupt.stopped_at} (checkpoint saved in {train_args.output_dir}); resume with "
            "--resume_from_checkpoint last", 128 + interrupt.received)
    if trainer.state.best_model_checkpoint:
        logger.warning("best model: %s (eval_map %.4f at step %s)%s", trainer.state.best_model_checkpoint,
                       trainer.state.best_metric, trainer.state.best_global_step,
                       ", its EMA weights" if trainer.ema is not None else "")
    trainer.save_model()
    if trainer.eval_dataset is None:
        return {}
    if trainer.compute_metrics is not None:
        trainer.compute_metrics.keep_rows = True  # the final evaluation only: periodic ones keep nothing
    final = trainer.evaluate()
    trainer.log_metrics("eval", final)
    trainer.save_metrics("eval", final, combined=False)
    return final


def take_hub_push(train_args) -> dict | None:
    """The Trainer would push every checkpoint as it is saved; the recipe pushes the final folder once,
    after the final evaluation (`push_folder`). Takes the request (and the token) off the arguments."""
    if not train_args.push_to_hub:
        return None
    if not train_args.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id (e.g. your-name/deformable-detr-mydata)")
    push = {"repo_id": train_args.hub_model_id, "token": train_args.hub_token,
            "private": train_args.hub_private_repo}
    train_args.push_to_hub, train_args.hub_token = False, None
    return push


def save_outputs(trainer, data_args, metrics, final: dict, precision: str) -> None:
    """The run's history (trainer_state.json), per-class AP, the plots and the model card beside the weights
    (main process)."""
    if not trainer.is_world_process_zero():
        return
    output_dir = trainer.args.output_dir
    # The Trainer writes trainer_state.json only inside checkpoints; a run that saves none would lose its history.
    trainer.state.save_to_json(os.path.join(output_dir, "trainer_state.json"))
    plots, threshold = {}, None
    if metrics is not None and metrics.last_result is not None:
        with open(os.path.join(output_dir, "eval_per_class.json"), "w") as f:
            json.dump(metrics.last_result["per_class"], f, indent=2)
        threshold = save_suggested_threshold(trainer, metrics)
        plots = save_plots(trainer, metrics, score_threshold=threshold["threshold"] if threshold else None)
    ema = None
    if trainer.ema is not None:
        ema = (f"the exponential moving average (decay {trainer.args.ema_decay}, warm-up "
               f"{trainer.args.ema_warmup_steps} steps, {trainer.ema.updates} updates), evaluated as saved")
    write_model_card(output_dir, trainer.model, data_args=data_args, metrics=final, precision=precision,
                     plots=plots, ema=ema, threshold=threshold)


def save_suggested_threshold(trainer, metrics) -> dict | None:
    """The score threshold of best F1 on the validation set (`analysis.best_f1_threshold`): written into the saved
    config.json as `suggested_threshold` (predict's default; the card names it for `pipeline()`) and logged.
    None when the final evaluation detected nothing."""
    from .analysis import best_f1_threshold

    best = best_f1_threshold(metrics.coco_gt, metrics.last_rows)
    if best["threshold"] is None:
        logger.warning("no detections in the final evaluation: no score threshold to suggest")
        return None
    best["threshold"] = round(best["threshold"], 4)
    config = trainer.accelerator.unwrap_model(trainer.model).config
    config.suggested_threshold = best["threshold"]
    config.save_pretrained(trainer.args.output_dir)
    logger.info("suggested score threshold %.4f (best F1 %.3f at IoU 0.5 on the validation set: precision %.3f, "
                "recall %.3f); saved in config.json", best["threshold"], best["f1"], best["precision"],
                best["recall"])
    return best


def save_plots(trainer, metrics, score_threshold: float | None = None) -> dict[str, str]:
    """The figures of the final evaluation into output_dir/plots; a plotting failure is logged, not raised (the
    model is already saved)."""
    from .plots import write_plots

    if metrics.last_rows is None:
        return {}
    table = trainer.eval_dataset.with_format(None).select_columns(["image_id", "image_path"])
    try:
        return write_plots(os.path.join(trainer.args.output_dir, "plots"), metrics.coco_gt, metrics.last_rows,
                           image_paths=dict(zip(table["image_id"], table["image_path"])),
                           log_history=trainer.state.log_history,
                           score_threshold=score_threshold)
    except Exception:  # hours of training must not end in a traceback over a figure
        logger.exception("plots could not be drawn (the model and metrics are saved)")
        return {}
