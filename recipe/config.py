"""Configuration: dataclass defaults < YAML file < command line. Unknown keys are errors.

`python scripts/train.py CONFIG.yaml [--field value ...]`. The seed's flag spellings
(`--train-img`, `--num-epochs`, `--batch-size`, ...) are accepted as aliases.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .errors import ConfigError


@dataclass
class DataArguments:
    train_img: str | None = field(default=None, metadata={"help": "Training image folder."})
    train_ann: str | None = field(default=None, metadata={"help": "Training annotation file (COCO json)."})
    val_img: str | None = field(default=None, metadata={"help": "Validation image folder."})
    val_ann: str | None = field(default=None, metadata={"help": "Validation annotation file (COCO json)."})
    annotation_format: str = field(default="auto", metadata={
        "help": "auto (a JSON object is COCO, a JSON list a BDD100K frame list), coco or bdd100k."})
    box_convention: str = field(default="inclusive", metadata={
        "help": "BDD100K box2d: inclusive (w = x2 - x1 + 1, current toolkit) or exclusive (w = x2 - x1, 2021)."})
    bdd_image_size: list[int] = field(default_factory=lambda: [1280, 720], metadata={
        "help": "Width and height of BDD100K frames (the label files do not carry them)."})
    subset: int | None = field(default=None, metadata={"help": "Use only the first N images (by id) of each split."})
    demo_data: str | None = field(default=None, metadata={
        "help": "If set and the annotation files are missing, generate the synthetic demo data in this folder."})
    dataset_cache_dir: str | None = field(default=None, metadata={
        "help": "Arrow cache folder (default: the datasets cache, under HF_HOME)."})
    shortest_edges: list[int] = field(default_factory=lambda: [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800],
                                      metadata={"help": "Train: shortest edge drawn from this list (DETR multi-scale)."})
    longest_edge: int = field(default=1333, metadata={"help": "Cap on the longest edge (train and eval)."})
    eval_size: int = field(default=800, metadata={"help": "Eval: shortest edge."})
    hflip_prob: float = field(default=0.5, metadata={"help": "Train: horizontal flip probability."})
    crop_prob: float = field(default=0.0, metadata={"help": "Train: probability of a bbox-safe random crop."})
    color_jitter_prob: float = field(default=0.5, metadata={"help": "Train: probability of a mild colour jitter."})


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default="SenseTime/deformable-detr", metadata={
        "help": "Hub id, local folder or cached model. Ignored when model_config is given."})
    model_config: str | None = field(default=None, metadata={
        "help": "A model config (JSON object, or a mapping in YAML) to build a randomly initialised model; "
                "used for tiny models trained from scratch."})
    random_init: bool = field(default=False, metadata={
        "help": "Build model_name_or_path's architecture with random weights (explicit opt-in; said loudly)."})
    offline: bool = field(default=False, metadata={"help": "Never touch the network (same as HF_HUB_OFFLINE=1)."})
    ignore_mismatched_sizes: bool = field(default=True, metadata={
        "help": "Re-initialise the classification head when the class count differs from the checkpoint."})
    train_backbone_stem: bool | None = field(default=None, metadata={
        "help": "Train the backbone's stem and first stage too (default: yes for random weights, "
                "no for pretrained, as in the original recipe)."})
    # Loss and matching: None = the model family's original recipe (recipe/families.py, README "Families").
    auxiliary_loss: bool | None = field(default=None, metadata={
        "help": "Decoder auxiliary losses (default: the family's original recipe; on for all but YOLOS)."})
    class_cost: float | None = field(default=None, metadata={"help": "Hungarian matching cost of the class."})
    bbox_cost: float | None = field(default=None, metadata={"help": "Matching cost of the L1 box distance."})
    giou_cost: float | None = field(default=None, metadata={"help": "Matching cost of the GIoU."})
    class_loss_coefficient: float | None = field(default=None, metadata={
        "help": "Weight of the class loss (loss_ce / loss_vfl / loss_mal; Deformable DETR original: 2)."})
    bbox_loss_coefficient: float | None = field(default=None, metadata={"help": "Weight of loss_bbox."})
    giou_loss_coefficient: float | None = field(default=None, metadata={"help": "Weight of loss_giou."})
    backbone_lr_multiplier: float | None = field(default=None, metadata={
        "help": "Backbone lr = lr x this (default: the family's, e.g. 0.1 for the DETRs)."})
    linear_proj_lr_multiplier: float = field(default=0.1, metadata={
        "help": "sampling_offsets / reference_points lr = lr x this (Deformable DETR)."})
    score_threshold: float = field(default=0.0, metadata={
        "help": "Evaluation: keep detections scoring above this (COCO protocol: 0)."})
    top_k: int = field(default=100, metadata={"help": "Evaluation: detections kept per image (COCO: 100)."})
    metric_backend: str = field(default="pycocotools", metadata={
        "help": "COCOeval implementation: pycocotools or faster_coco_eval (optional extra; same numbers)."})


@dataclass
class DetectionTrainingArguments(TrainingArguments):
    """TrainingArguments with the defaults this task needs (each changed default says why)."""

    output_dir: str | None = field(default="outputs/deformable-detr", metadata={"help": "Output folder."})
    # The transform needs the image path and objects columns, which the Trainer would drop (#17894).
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep False for detection."})
    # Per-image label dicts must not be concatenated across batches (#25939).
    eval_do_concat_batches: bool = field(default=False, metadata={"help": "Keep False for detection."})
    # Compute COCO metrics batch by batch so eval memory does not grow with all model outputs (#34675).
    batch_eval_metrics: bool = field(default=True, metadata={"help": "Keep True for detection."})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW lr (Deformable DETR: 2e-4)."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay (Deformable DETR: 1e-4)."})
    max_grad_norm: float = field(default=0.1, metadata={"help": "Gradient clipping (Deformable DETR: 0.1)."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate (if a val set is given)."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save checkpoints."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    # A NaN/inf loss must show in the logs (the default filter hides it); a callback then stops the run.
    logging_nan_inf_filter: bool = field(default=False, metadata={"help": "Keep False: show non-finite losses."})
    dataloader_num_workers: int = field(default=2, metadata={"help": "Data loading worker processes."})
    amp: bool = field(default=False, metadata={
        "help": "Mixed precision: bf16 where supported, else fp16 on CUDA; on CPU bf16 if supported, else fp32."})


# Seed flag -> the fields it sets.
SEED_FLAGS = {
    "--num-epochs": ["--num_train_epochs"],
    "--batch-size": ["--per_device_train_batch_size", "--per_device_eval_batch_size"],
    "--num-workers": ["--dataloader_num_workers"],
    "--pretrained": ["--model_name_or_path"],
}
DATACLASSES = (DataArguments, ModelArguments, DetectionTrainingArguments)


def translate_seed_flags(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        targets = SEED_FLAGS.get(flag)
        if targets is None:
            out.append(argv[i])
        else:
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{flag} needs a value")
                i += 1
                value = argv[i]
            for target in targets:
                out += [target, value]
        i += 1
    return out


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file is a mapping of field: value")
    known = {f.name for dc in DATACLASSES for f in dataclasses.fields(dc)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; see the config reference in README.md")
    if isinstance(values.get("model_config"), dict):
        values["model_config"] = json.dumps(values["model_config"])
    return values


def launched_without_cuda() -> bool:
    """True in a multi-process launch (WORLD_SIZE > 1) on a machine without CUDA."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def parse_config(argv: list[str]) -> tuple[DataArguments, ModelArguments, DetectionTrainingArguments]:
    """[CONFIG.yaml] [--field value ...] -> the three argument dataclasses."""
    argv = list(argv)
    defaults = {}
    if argv and argv[0].endswith((".yaml", ".yml")):
        defaults = load_yaml(argv.pop(0))
    if launched_without_cuda():
        # Under torchrun / `accelerate launch --multi_gpu` on a machine without CUDA, the Trainer joins the
        # processes in a (gloo) group only with use_cpu=True; otherwise each trains alone, silently.
        defaults.setdefault("use_cpu", True)
    parser = HfArgumentParser(DATACLASSES)
    parser.set_defaults(**defaults)
    try:
        data_args, model_args, train_args, rest = parser.parse_args_into_dataclasses(
            args=translate_seed_flags(argv), return_remaining_strings=True)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if rest:
        raise ConfigError(f"unknown argument(s) {rest}; see `python scripts/train.py --help`")
    return data_args, model_args, train_args
