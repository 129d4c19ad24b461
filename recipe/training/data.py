"""Training's data: the training and validation tables (of `--dataset` or the annotation files; the demo scenes
generated when asked), their sanitizing reports, and the tables with their on-the-fly transforms."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from recipe.core.distributed import is_main_process
from recipe.core.errors import ConfigError, DataError
from recipe.data.builder import DetectionData
from recipe.data.sanitize import format_report, save_reports
from recipe.data.source import DataSource, data_source, load_table, load_tables
from recipe.pipeline.augment import eval_augmentation_for
from recipe.pipeline.presets import mixes_images, training_augmentation
from recipe.pipeline.processor_size import rule_of
from recipe.pipeline.transforms import AugmentationSeeds, ImagePool, make_transform
from recipe.training.schedule import steps_per_epoch

logger = logging.getLogger("recipe")


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
    train = load_split(data_args, train_args, data_args.train_img, data_args.train_ann, "train", offline)
    if not data_args.val_ann:
        if train_args.early_stopping_patience is not None:
            raise ConfigError("early_stopping_patience needs a validation set (val_img and val_ann) to watch eval_map")
        train_args.eval_strategy = "no"
        return train, None
    val = load_split(data_args, train_args, data_args.val_img, data_args.val_ann, "validation", offline)
    if val.categories != train.categories:
        raise DataError(f"{data_args.val_ann}: categories differ from {data_args.train_ann}; "
                        "both files need the same categories in the same order")
    return train, val


def source_of(data_args, *, annotation_file: str | None = None, image_root: str | None = None, split: str = "train",
              offline: bool = False) -> DataSource:
    """The data source of one split of training: `--dataset`, or an annotation file and its images."""
    return data_source(data_args, annotation_file=annotation_file, image_root=image_root, split=split,
                       annotation_format=data_args.annotation_format, box_convention=data_args.box_convention,
                       bdd_image_size=data_args.bdd_image_size, cache_dir=data_args.dataset_cache_dir,
                       offline=offline)


def load_dataset_argument(data_args, train_args, offline: bool) -> tuple[DetectionData, DetectionData | None]:
    with train_args.main_process_first(desc=f"building the tables of {data_args.dataset}"):
        tables = load_tables(source_of(data_args, offline=offline), subset=data_args.subset,
                             image_check=data_args.image_check, skip_bad_images=data_args.skip_bad_images)
    val = tables.get("validation")
    if val is None:
        if train_args.early_stopping_patience is not None:
            raise ConfigError(f"early_stopping_patience needs a validation set; {data_args.dataset} has none "
                              "(set train_val_split above 0)")
        train_args.eval_strategy = "no"
    return tables["train"], val


def load_split(data_args, train_args, img, ann, name, offline: bool) -> DetectionData:
    source = source_of(data_args, annotation_file=ann, image_root=img, split=name, offline=offline)
    with train_args.main_process_first(desc=f"building the {name} table"):
        return load_table(source, subset=data_args.subset, image_check=data_args.image_check,
                          skip_bad_images=data_args.skip_bad_images)


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
        from recipe.data.synthetic import make_demo_dataset

        logger.warning("demo data not found: generating it in %s", data_args.demo_data)
        make_demo_dataset(data_args.demo_data)


def report_data(data_args, train_args, train, val) -> None:
    """Print the sanitizing report of each split and save it as data_report.json (main process), with the classes
    that have no training box (`classes_without_boxes`, each named in a warning)."""
    if not is_main_process():
        return
    missing = classes_without_boxes(train)
    for category in missing:
        logger.warning("class %r (id %s) has no training box: the model cannot learn it", category["name"],
                       category["id"])
    reports = {"train": {**train.report, "classes_without_boxes": missing},
               **({"validation": val.report} if val else {})}
    sources = {"train": data_args.dataset or data_args.train_ann, "validation": data_args.dataset or data_args.val_ann}
    for split, report in reports.items():
        print(format_report(report, f"{split} ({sources[split]})"))
    save_reports(reports, train_args.output_dir)


def classes_without_boxes(data: DetectionData) -> list[dict]:
    """[{id, name}] of the categories with no box the loss trains on in the table: none, or only crowd boxes (VOC
    difficult ones too), which the loss leaves out."""
    table = data.dataset.select_columns(["objects"]).with_format("arrow")[:]  # the selected rows only (subset)
    objects = table.column("objects").combine_chunks()
    labels = pc.list_flatten(objects.field("category")).to_numpy(zero_copy_only=False)
    crowd = pc.list_flatten(objects.field("iscrowd")).to_numpy(zero_copy_only=False)
    counts = np.bincount(labels[crowd == 0].astype(np.int64), minlength=len(data.categories))
    return [{"id": c["id"], "name": c["name"]} for c, n in zip(data.categories, counts) if n == 0]


def training_epochs(train_args, num_images: int) -> int:
    """The epochs the Trainer will start: ceil(num_train_epochs), or with max_steps the epochs those steps reach
    (the Trainer's count: batches per process // gradient accumulation steps per epoch)."""
    per_epoch = steps_per_epoch(train_args, num_images)
    if train_args.max_steps and train_args.max_steps > 0:
        return -(-train_args.max_steps // per_epoch)
    return math.ceil(train_args.num_train_epochs)


def build_datasets(data_args, processor, train, val, *, seeds: AugmentationSeeds, epochs: int | None = None,
                   cut_short: bool = False, batch_geometry: bool = True):
    """The tables with their on-the-fly transforms: (train dataset, eval dataset or None).

    `seeds`: the training augmentation's streams, per image and epoch (from --seed). `epochs`: the run's epoch
    count, for the augmentation's phases: the final one without augmentation (`no_aug_epochs`: from epoch
    `epochs - no_aug_epochs` on, training images get the evaluation resize only, or with an original preset its flip
    and the evaluation size; a run `cut_short` by max_steps to fewer epochs skips it, with a warning) and a preset's
    Mosaic / MixUp epochs (`presets.Phases`). `batch_geometry`: flip and resize on the batch where the model runs
    (`make_transform`); False where that is the CPU, which has no device to offload to: the loader's cv2 flip and
    resize cost ~1.9 ms per image against 5.8-8.4 ms in torch on the batch, with the same draws and boxes
    (tests/test_collate.py)."""
    plain, plain_from = None, None
    preset = data_args.augmentation != "deformable"
    if data_args.no_aug_epochs and (epochs is None or data_args.no_aug_epochs >= epochs):
        if not cut_short:
            raise ConfigError(f"no_aug_epochs {data_args.no_aug_epochs} must be fewer than the run's epochs "
                              f"({epochs}); lower it or train longer")
        logger.warning("no_aug_epochs %d: this run (max_steps) has %s epochs; no final phase without augmentation",
                       data_args.no_aug_epochs, epochs)
    elif data_args.no_aug_epochs:
        plain_from = epochs - data_args.no_aug_epochs
        plain = None if preset else evaluation_augmentation(processor)  # a preset ends with its own final phase
        logger.info("epochs %d-%d of %d train without augmentation (no_aug_epochs %d)", plain_from + 1, epochs,
                    epochs, data_args.no_aug_epochs)
    pool = ImagePool(train.dataset) if mixes_images(data_args.augmentation) else None  # Mosaic / MixUp read it
    augmentation = training_augmentation(data_args, epochs=epochs, no_aug_epochs=0 if plain_from is None else None,
                                         epoch_of=seeds, pool=pool)
    if preset:
        logger.info("augmentation %s: %s", data_args.augmentation, augmentation.phases)
    train_ds = train.dataset.with_transform(make_transform(augmentation, seeds=seeds, batch_geometry=batch_geometry,
                                                           plain=plain, plain_from_epoch=plain_from if plain else None))
    if val is None:
        return train_ds, None
    return train_ds, val.dataset.with_transform(make_transform(evaluation_augmentation(processor)))


def evaluation_augmentation(processor):
    """Evaluation (and the final no-augmentation phase) resizes as the saved processor's `size` (set in
    `build_model`) says, with its rounding, so that evaluate.py and predict.py on the saved model give this
    evaluation's numbers."""
    return eval_augmentation_for(processor.size, rule=rule_of(processor), source="the image processor (--eval_size)")


def image_labels(table) -> list[list[int]]:
    """Each image's box labels (contiguous 0..N-1), read as one Arrow column (COCO-size tables)."""
    objects = table.select_columns(["objects"]).with_format("arrow")[:].column("objects").combine_chunks()
    return objects.field("category").to_pylist()


def repeat_factor_sampler(data_args, train_args, train, *, seeds):
    """`--repeat_factor_threshold`: the training sampler repeating images of rare classes (`pipeline.sampling`), its
    per-class figures logged and added to data_report.json. None when off."""
    threshold = data_args.repeat_factor_threshold
    if not threshold:
        return None
    from recipe.pipeline.sampling import (
        RepeatFactorSampler,
        class_frequencies,
        class_repeat_factors,
        image_repeat_factors,
    )

    labels = image_labels(train.dataset)
    frequencies = class_frequencies(labels, len(train.categories))
    class_factors = class_repeat_factors(frequencies, threshold)
    factors = image_repeat_factors(labels, class_factors)
    step_images = (train_args.per_device_train_batch_size * max(1, train_args.world_size)
                   * train_args.gradient_accumulation_steps)
    sampler = RepeatFactorSampler(factors, seed=train_args.data_seed if train_args.data_seed is not None else
                                  train_args.seed, epoch_of=seeds, step_images=step_images)
    report = {"threshold": threshold, "images": len(labels), "images_per_epoch": len(sampler), "classes": {}}
    for c, category in enumerate(train.categories):
        holding = [f for f, image in zip(factors, labels) if c in image]
        report["classes"][category["name"]] = {
            "images": len(holding), "frequency": round(frequencies[c], 6), "repeat_factor": round(class_factors[c], 4),
            "images_per_epoch": round(sum(holding), 2)}
    for name, row in report["classes"].items():
        logger.info("repeat factor %s: %d images (f %.4f), factor %.3f, %.1f images per epoch", name, row["images"],
                    row["frequency"], row["repeat_factor"], row["images_per_epoch"])
    logger.warning("repeat-factor sampling (threshold %s): %d images per epoch from %d", threshold, len(sampler),
                   len(labels))
    add_to_report(train_args.output_dir, "repeat_factor_sampling", report)
    return sampler


def add_to_report(output_dir: str, key: str, value) -> None:
    """One entry added to data_report.json (main process)."""
    if not is_main_process():
        return
    path = Path(output_dir) / "data_report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    save_reports({**report, key: value}, output_dir)
