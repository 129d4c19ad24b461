"""Fine-tune a DETR-family detector: the storyboard that scripts/train.py runs.

Each step is a named function in data-flow order; `run()` only calls them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import set_seed

from recipe.config.arguments import EvalArguments
from recipe.core.distributed import is_main_process
from recipe.core.errors import TrainingInterrupted
from recipe.core.runtime import check_world_size, resolve_precision
from recipe.data.sanitize import save_reports
from recipe.engine.callbacks import (
    AugmentationEpochCallback,
    InterruptCallback,
    NoDuplicateFinalEvaluationCallback,
    NonFiniteLossCallback,
)
from recipe.engine.trainer import DetectionTrainer
from recipe.evaluation.coco_eval import gt_from_table
from recipe.evaluation.metrics import CocoDetectionMetrics
from recipe.models.families import collator_for, size_multiple
from recipe.models.loading import load_model_and_processor
from recipe.models.sources import check_model_available, is_offline
from recipe.pipeline.processor_size import canvas_of
from recipe.pipeline.transforms import AugmentationSeeds, make_transform
from recipe.training.data import (
    build_datasets,
    evaluation_augmentation,
    load_splits,
    repeat_factor_sampler,
    report_data,
    training_epochs,
)
from recipe.training.hub_push import push_folder
from recipe.training.run_folder import prepare_output_dir
from recipe.training.run_outputs import save_outputs, take_hub_push
from recipe.training.schedule import apply_schedule

logger = logging.getLogger("recipe")


def run(data_args, model_args, train_args, eval_args=None, *, callbacks=()) -> dict:
    """Train (and evaluate, if a validation set is given). Returns the final eval metrics (or {}).

    The arguments are what `recipe.config.load.parse_config` returns: `run(*parse_config(argv))`; `callbacks`
    are extra `transformers.TrainerCallback`s (e.g. early stopping, a step timer)."""
    eval_args = eval_args if eval_args is not None else EvalArguments()
    precision = prepare_runtime(train_args)
    prepare_output_dir(train_args)
    parts = prepare_training(data_args, model_args, train_args, eval_args)
    if train_args.preflight_steps:
        preflight(parts.model, parts.processor, parts.train, data_args, model_args, train_args, eval_args)
    push = take_hub_push(train_args)
    logger.info("precision: %s; train images: %d; val images: %d", precision, len(parts.train_dataset),
                len(parts.eval_dataset) if parts.eval_dataset is not None else 0)
    trainer = DetectionTrainer(model=parts.model, **trainer_arguments(parts, model_args, train_args, eval_args,
                                                                      callbacks=callbacks))
    final = train_and_evaluate(trainer, train_args)
    save_outputs(trainer, data_args, parts.metrics, final, precision)
    if push and is_main_process():
        push_folder(train_args.output_dir, push["repo_id"], token=push["token"], private=push["private"])
    return final


class TrainingParts(NamedTuple):
    """What a DetectionTrainer is built from (`prepare_training`): the model and its processor, the training split
    (its table and classes), the augmentation's seeds, the datasets, the compute_metrics hook (None without a
    validation set) and the training sampler."""

    model: object
    processor: object
    train: object
    seeds: AugmentationSeeds
    train_dataset: object
    eval_dataset: object
    metrics: CocoDetectionMetrics | None
    sampler: object = None  # `--repeat_factor_threshold`'s (pipeline.sampling.RepeatFactorSampler), else None


def prepare_training(data_args, model_args, train_args, eval_args) -> TrainingParts:
    """The data read and reported, the model built (seeded) and the datasets with their transforms: what `run`
    trains, and what `recipe.tools.search` builds each trial's trainer from."""
    check_model_available(model_args)  # before any data is read
    train, val = load_splits(data_args, train_args, offline=is_offline(model_args))
    apply_schedule(data_args, train_args, len(train.dataset))
    report_data(data_args, train_args, train, val)
    set_seed(train_args.seed)
    model, processor = build_model(model_args, data_args, train.categories)
    seeds = AugmentationSeeds(train_args.seed)
    train_ds, eval_ds = run_datasets(data_args, processor, train, val, train_args, seeds)
    sampler = repeat_factor_sampler(data_args, train_args, train, seeds=seeds)
    return TrainingParts(model, processor, train, seeds, train_ds, eval_ds, build_metrics(eval_args, val), sampler)


def run_datasets(data_args, processor, train, val, train_args, seeds: AugmentationSeeds):
    """(train dataset, eval dataset or None) for the schedule of `train_args` (its epochs place the augmentation's
    phases)."""
    return build_datasets(data_args, processor, train, val, seeds=seeds,
                          epochs=training_epochs(train_args, len(train.dataset)),
                          cut_short=bool(train_args.max_steps and train_args.max_steps > 0),
                          batch_geometry=train_args.device.type != "cpu")


def trainer_arguments(parts: TrainingParts, model_args, train_args, eval_args, *, callbacks=()) -> dict:
    """DetectionTrainer's keyword arguments but the model (`model=` for a run, `model_init=` for a search)."""
    return dict(args=train_args, train_dataset=parts.train_dataset, eval_dataset=parts.eval_dataset,
                data_collator=run_collator(parts.model.config, parts.processor),
                processing_class=parts.processor, compute_metrics=parts.metrics,
                callbacks=[NonFiniteLossCallback(), AugmentationEpochCallback(parts.seeds),
                           NoDuplicateFinalEvaluationCallback(), *early_stopping(train_args), *callbacks],
                model_args=model_args, top_k=eval_args.top_k, train_sampler=parts.sampler)


def prepare_runtime(train_args) -> str:
    """Precision (resolving --amp) and the process group check. -> "fp32" | "bf16" | "fp16"."""
    precision = resolve_precision(train_args)
    check_world_size(train_args)
    if not torch.cuda.is_available():
        train_args.dataloader_pin_memory = False  # nothing to pin to; avoids a warning per dataloader
    return precision


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


def run_collator(config, processor):
    """The training and evaluation batches' collator: on the saved processor's canvas (`pad_size`, set by
    `build_model` when the family needs sizes in multiples), so the model trains and is scored on the pixels that
    predict / evaluate / pipeline() give it from the saved folder. A model that does not read the pixel mask sees
    the padding: padded to each batch's own largest size, D-FINE's evaluation during training scored other numbers
    than its folder did (tests/test_predict.py)."""
    return collator_for(config, processor, normalise_on_device=True, pad_size=canvas_of(processor))


def preflight(model, processor, train, data_args, model_args, train_args, eval_args) -> dict:
    """`--preflight_steps`: memorise a few training images first (`recipe.training.preflight`); its figures are added to
    data_report.json."""
    from recipe.training.preflight import run_preflight

    result = run_preflight(
        model, processor, train, train_args, model_args, steps=train_args.preflight_steps,
        collator_factory=lambda: run_collator(model.config, processor),
        transform_factory=lambda: make_transform(evaluation_augmentation(processor)),
        metrics_factory=lambda subset: metrics_for(eval_args, subset, train.categories))
    if is_main_process():
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
