"""The arguments every entry point shares, one dataclass per concern: data, model, evaluation, and the recipe's own
training options. Light on purpose (no torch or transformers at import), so `--help` and `docs/config.md` are built
from them quickly; `recipe/config/load.py` joins `TrainingOptions` to transformers' `TrainingArguments`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from recipe.config.fields import arg, check_fields
from recipe.config.model_config import check_whole_numbers, model_type_of
from recipe.core.errors import ConfigError
from recipe.data import choices


@dataclass
class DatasetArguments:
    """A whole dataset by one name, any format `recipe.data.formats` reads (train, evaluate, predict, check, browse)."""

    _argument_group_name = "data"

    dataset: str | None = arg(None, aliases=["--dataset_name"], help=(
        "A whole dataset, format detected: a Pascal VOC root, an Ultralytics data.yaml, a Hugging Face dataset "
        "(Hub id, parquet folder or save_to_disk folder), a COCO json beside its images or a folder of them, a "
        "BDD100K frame list. Both splits come from it (instead of --train-img/--train-ann/--val-img/--val-ann)."))
    class_names: list[str] | None = arg(None, help=(
        "Class order for VOC (default: sorted), names of Hugging Face integer categories; a file naming its classes "
        "(COCO, BDD100K, YOLO) must name these, in this order."))
    train_val_split: float = arg(0.15, range="[0, 1)", help=(
        "--dataset without a validation split: this fraction of the training images becomes it (0: none)."))
    train_val_split_seed: int = arg(42, help="Seed of the draw of train_val_split (evaluate draws the same).")

    def __post_init__(self):
        check_fields(self)


@dataclass
class DatasetSplitArguments(DatasetArguments):
    split: str = arg("validation", choices=list(choices.SPLITS), help="--dataset: the split to use.")


@dataclass
class DataArguments(DatasetArguments):
    train_img: str | None = arg(None, help="Training image folder.")
    train_ann: str | None = arg(None, help="Training annotation file (COCO json or BDD100K frame list).")
    val_img: str | None = arg(None, help="Validation image folder.")
    val_ann: str | None = arg(None, help="Validation annotation file (COCO json or BDD100K frame list).")
    annotation_format: str = arg("auto", choices=list(choices.ANNOTATION_FORMATS), help=(
        "auto (a JSON object is COCO, a JSON list a BDD100K frame list), coco or bdd100k."))
    box_convention: str = arg("inclusive", choices=list(choices.BOX_CONVENTIONS), help=(
        "BDD100K box2d: inclusive (w = x2 - x1 + 1, current toolkit) or exclusive (w = x2 - x1, 2021)."))
    bdd_image_size: list[int] = arg(default_factory=lambda: [1280, 720], length=2, range="[1, inf)", help=(
        "Width and height of BDD100K frames (the label files do not carry them)."))
    subset: int | None = arg(None, range="[1, inf)", help="Use only the first N images (by id) of each split.")
    image_check: str = arg("decode", choices=list(choices.IMAGE_CHECKS), help=(
        "How each image is checked when a split's table is built (once; a cache hit re-checks changed files): "
        "decode (fully decoded, size compared with the annotations), header (size from the header: truncated "
        "files pass), exists (the file only)."))
    skip_bad_images: bool = arg(False, help=(
        "Drop images that are missing, unreadable or not the annotated size, counted and listed in the data "
        "report (data_report.json), instead of stopping with an error that names them."))
    demo_data: str | None = arg(None, help=(
        "If set and the annotation files are missing, generate the synthetic demo data in this folder."))
    dataset_cache_dir: str | None = arg(None, help="Arrow cache folder (default: the datasets cache, under HF_HOME).")
    shortest_edges: list[int] = arg(default_factory=lambda: [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800],
                                    range="[1, inf)", help="Train: shortest edge drawn from this list (multi-scale).")
    longest_edge: int = arg(1333, range="[1, inf)", help="Cap on the longest edge (train and eval).")
    eval_size: int = arg(800, range="[1, inf)", help="Eval: shortest edge (resize square: the side).")
    resize: str = arg("shortest_edge", choices=["shortest_edge", "square"], help=(  # transforms.RESIZES
        "shortest_edge (DETR style: aspect ratio kept, shortest edge from shortest_edges, longest capped at "
        "longest_edge) or square (RT-DETR / D-FINE / DEIMv2 style: side x side, the side drawn from "
        "shortest_edges; eval at eval_size x eval_size)."))
    augmentation: str = arg("deformable", choices=["deformable", "rtdetr", "deim", "rfdetr"], help=(  # presets.PRESETS
        "Train: the augmentation preset. deformable: the recipe's (flip, multi-scale, crop_prob, color_jitter_prob); "
        "rtdetr (RT-DETR, RT-DETRv2, D-FINE): photometric distort, zoom-out, IoU crop, flip, multi-scale; deim "
        "(DEIM, DEIMv2): rtdetr's plus Mosaic and MixUp on DEIM's epoch schedule; rfdetr (RF-DETR, LW-DETR): flip "
        "and DETR's resize-crop. Each family's config names its own (recipe/pipeline/presets.py cites the sources)."))
    hflip_prob: float = arg(0.5, range="[0, 1]", help="Train: horizontal flip probability.")
    crop_prob: float = arg(0.0, range="[0, 1]", help=(
        "Train, augmentation deformable: probability of a bbox-safe random crop."))
    color_jitter_prob: float = arg(0.5, range="[0, 1]", help=(
        "Train, augmentation deformable: probability of a mild colour jitter."))
    repeat_factor_threshold: float = arg(0.0, range="[0, 1]", help=(
        "Train: repeat images of classes found in under this fraction of the training images (LVIS repeat-factor "
        "sampling; 0: off; 0.1-0.3 for a few classes). Per class in data_report.json."))
    no_aug_epochs: int = arg(0, range="[0, inf)", help=(
        "Train the last N epochs without augmentation, as D-FINE's stop_epoch and DEIM's no_aug_epoch do "
        "(deformable: no flip, crop, colour jitter or multi-scale, images at eval_size; the other presets keep the "
        "flip, as their originals)."))

    def __post_init__(self):
        check_fields(self)
        if self.augmentation != "deformable" and (self.crop_prob != 0.0 or self.color_jitter_prob != 0.5):
            raise ConfigError(f"crop_prob {self.crop_prob} / color_jitter_prob {self.color_jitter_prob} would have "
                              f"no effect: they are the deformable augmentation's, and augmentation "
                              f"{self.augmentation} has its own crop and colour ops; remove them (or set crop_prob 0 "
                              "and color_jitter_prob 0.5, the defaults)")

    def check_command_line(self, given: set[str], source: str) -> None:
        """--dataset and the annotation-file flags name the same thing: the command line wins over the YAML, and
        both on the command line is an error."""
        files = [f for f in ("train_img", "train_ann", "val_img", "val_ann") if f in given]
        if self.dataset and files and "dataset" in given:
            raise ConfigError(f"--dataset and --{files[0]} both given: name the whole dataset (--dataset) or its "
                              "files (--train-img/--train-ann/--val-img/--val-ann), not both")
        if self.dataset and files:
            self.dataset = None  # the files typed on the command line replace the YAML's dataset
        elif self.dataset:
            self.train_img = self.train_ann = self.val_img = self.val_ann = self.demo_data = None

    def check_validation_pair(self) -> None:
        """Training: a validation split needs both its images and its annotations (evaluate's --gt alone is fine)."""
        for given, missing in (("val_ann", "val_img"), ("val_img", "val_ann")):
            if getattr(self, given) and not getattr(self, missing):
                raise ConfigError(f"{given} is set but {missing} is not: give both the validation image folder "
                                  "(--val-img) and its annotation file (--val-ann), or neither")


@dataclass
class ModelArguments:
    _argument_group_name = "model"
    model_name_or_path: str | None = arg("SenseTime/deformable-detr", help=(
        "Hub id, local folder or cached model. Ignored when model_config is given."))
    model_config: str | None = arg(None, help=(
        "A model config (JSON object, or a mapping in YAML) to build a randomly initialised model, or a family "
        "name (e.g. deformable_detr, d_fine: transformers' default architecture of that family); needs no Hub "
        "file, so it trains from scratch offline. A key the family's config class does not read is an error."))
    random_init: bool = arg(False, help=(
        "Build model_name_or_path's architecture with random weights (explicit opt-in; said loudly)."))
    keep_matching_heads: bool = arg(False, help=(
        "From a checkpoint: copy its class-head rows of the class names the data shares to their new label index; "
        "other classes start fresh (default: new heads if the count differs, else kept as they are)."))
    offline: bool = arg(False, help="Never touch the network (same as HF_HUB_OFFLINE=1).")
    train_backbone_stem: bool | None = arg(None, help=(
        "Train the backbone's stem and first stage too (default: yes for random weights, "
        "no for pretrained, as in the original recipe)."))
    # Loss and matching: None = the model family's original recipe (recipe/models/families.py).
    auxiliary_loss: bool | None = arg(None, help=(
        "Decoder auxiliary losses (default: the family's original recipe; on for all but YOLOS)."))
    class_cost: float | None = arg(None, range="[0, inf)", help="Hungarian matching cost of the class.")
    bbox_cost: float | None = arg(None, range="[0, inf)", help="Matching cost of the L1 box distance.")
    giou_cost: float | None = arg(None, range="[0, inf)", help="Matching cost of the GIoU.")
    class_loss_coefficient: float | None = arg(None, range="[0, inf)", help=(
        "Weight of the class loss (loss_ce / loss_vfl / loss_mal; Deformable DETR original: 2)."))
    bbox_loss_coefficient: float | None = arg(None, range="[0, inf)", help="Weight of loss_bbox.")
    giou_loss_coefficient: float | None = arg(None, range="[0, inf)", help="Weight of loss_giou.")
    backbone_lr_multiplier: float | None = arg(None, range="[0, inf)", help=(
        "Backbone lr = lr x this (default: the family's, e.g. 0.1 for the DETRs)."))
    linear_proj_lr_multiplier: float = arg(0.1, range="[0, inf)", help=(
        "sampling_offsets / reference_points lr = lr x this."))

    def __post_init__(self):
        check_fields(self)
        if isinstance(self.model_config, str) and self.model_config.strip().lower() in ("none", "null", ""):
            self.model_config = None  # `--model_config none` drops a YAML's model_config
        elif isinstance(self.model_config, str) and re.fullmatch(r"[A-Za-z][\w-]*", self.model_config.strip()):
            # `--model_config d_fine`: transformers' default architecture of the family, random weights, offline.
            self.model_config = json.dumps({"model_type": self.model_config.strip()})
        if self.keep_matching_heads and (self.model_config or self.random_init):
            given = "model_config" if self.model_config else "random_init"
            raise ConfigError(f"keep_matching_heads needs a checkpoint's class heads, and {given} builds random "
                              f"weights (no heads to keep): drop one of the two")
        model_type = model_type_of(self)
        if model_type is not None:
            check_whole_numbers(self, model_type)

    def check_command_line(self, given: set[str], source: str) -> None:
        """A checkpoint flag typed beside a model_config would be ignored (the model is built from the config):
        an error saying which wins and how to ask for the other."""
        if self.model_config is None or "model_config" in given:
            if self.model_config is not None and "model_name_or_path" in given:
                raise ConfigError("both --model_config and --model_name_or_path (--pretrained) given: the model "
                                  "would be built from model_config and the checkpoint ignored; give one of them")
            return
        flags = {"model_name_or_path": "--model_name_or_path (--pretrained)", "random_init": "--random_init"}
        typed = [flag for name, flag in flags.items() if name in given]
        if typed:
            raise ConfigError(f"{' and '.join(typed)} would have no effect: {source} sets model_config, which builds "
                              f"the model and wins; add --model_config none to use the checkpoint instead")


@dataclass
class EvalArguments:
    """How detections are kept and scored (training's evaluation and the evaluate entry point)."""
    _argument_group_name = "evaluation"

    score_threshold: float = arg(0.0, range="[0, 1]", help="Keep detections scoring above this (COCO protocol: 0).")
    top_k: int = arg(100, range="[1, inf)", help="Detections kept per image (COCO: 100).")
    metric_backend: str = arg("pycocotools", choices=["pycocotools", "faster_coco_eval"], help=(
        "COCOeval implementation; faster_coco_eval gives the same numbers, faster "
        "(pip install -e '.[faster-coco-eval]')."))

    def __post_init__(self):
        check_fields(self)
        if self.metric_backend == "faster_coco_eval":
            import importlib.util

            if importlib.util.find_spec("faster_coco_eval") is None:
                raise ConfigError("metric_backend faster_coco_eval needs the optional extra: "
                                  "pip install -e '.[faster-coco-eval]' (or use pycocotools: same numbers)")


@dataclass
class TrainingOptions:
    """The recipe's training options, and the `TrainingArguments` defaults this task needs changed (each says why).
    `config.DetectionTrainingArguments` puts them over transformers' `TrainingArguments`."""

    _argument_group_name = "training"
    _argument_group_description = (
        "The recipe's training options and the transformers defaults it changes. Every other "
        "transformers.TrainingArguments option is accepted too (--lr_scheduler_type, --warmup_steps, --bf16, "
        "--report_to, --push_to_hub, ...): see docs/config.md.")

    output_dir: str | None = arg("outputs/deformable-detr", help="Output folder.")
    # The transform needs the image path and objects columns, which the Trainer would drop (#17894).
    remove_unused_columns: bool = arg(False, help=(
        "Keep False: the transform reads the image path and objects columns, which the Trainer would drop."))
    # Per-image label dicts must not be concatenated across batches (#25939).
    eval_do_concat_batches: bool = arg(False, help=(
        "Keep False: per-image label dicts must not be concatenated across batches."))
    # Compute COCO metrics batch by batch so eval memory does not grow with all model outputs (#34675).
    batch_eval_metrics: bool = arg(True, help=(
        "Keep True: COCO metrics batch by batch, so evaluation memory does not grow with the model outputs."))
    learning_rate: float = arg(2e-4, range="(0, inf)", help="AdamW lr (Deformable DETR: 2e-4).")
    weight_decay: float = arg(1e-4, range="[0, inf)", help="AdamW weight decay (Deformable DETR: 1e-4).")
    max_grad_norm: float = arg(0.1, range="[0, inf)", help="Gradient clipping (Deformable DETR: 0.1).")
    eval_strategy: str = arg("epoch", help="When to evaluate (if a val set is given).")
    save_strategy: str = arg("epoch", help="When to save checkpoints.")
    save_total_limit: int | None = arg(2, range="[1, inf)", help="Checkpoints kept.")
    logging_steps: float = arg(10, range="(0, inf)", help="Log every N steps.")
    # A NaN/inf loss must show in the logs (the default filter hides it); a callback then stops the run.
    logging_nan_inf_filter: bool = arg(False, help="Keep False: show non-finite losses.")
    dataloader_num_workers: int = arg(2, range="[0, inf)", help="Data loading worker processes.")
    # transformers 5 removed this field; the recipe refuses a new run into a folder holding checkpoints without it.
    overwrite_output_dir: bool = arg(False, help=(
        "Start a new run in an output_dir that holds checkpoints (they are deleted)."))
    resume_from_checkpoint: str | None = arg(None, help=(
        "A checkpoint folder, or last / auto: the newest checkpoint-<step> in output_dir "
        "(last: one must exist; auto: start fresh if none)."))
    use_ema: bool = arg(False, help=(
        "Keep an exponential moving average of the weights; evaluation, the saved model and push_to_hub use it "
        "(RT-DETR / D-FINE / DEIM / RF-DETR train with one; their configs turn it on)."))
    ema_decay: float = arg(0.9999, range="[0, 1)", help="EMA decay (RT-DETR / D-FINE / DEIM: 0.9999; RF-DETR 0.993).")
    ema_warmup_steps: int = arg(2000, range="[0, inf)", help=(
        "EMA warm-up: the decay of update n is ema_decay * (1 - exp(-n / ema_warmup_steps)) (RT-DETR / D-FINE: "
        "2000; RF-DETR's tau: 100)."))
    schedule: str = arg("config", choices=["config", "auto"], help=(
        "auto: epochs, warm-up, EMA and no-augmentation epochs from the number of training images and the batch "
        "(recipe/training/schedule.py; logged, in the card; typed flags are kept). config: as the config says."))
    early_stopping_patience: int | None = arg(None, range="[1, inf)", help=(
        "Stop when eval_map has not improved for N evaluations; the best (EMA) model is kept and saved "
        "(sets load_best_model_at_end, metric_for_best_model eval_map, save_strategy = eval_strategy)."))
    preflight_steps: int = arg(0, range="[0, inf)", help=(
        "Before the run, memorise 8 training images for N steps; stop with an error if mAP@50 on them stays near 0 "
        "(a blind model, labels not matching the images, a diverging lr). 0: off; 300 on a GPU."))
    amp: bool = arg(False, help=(
        "Mixed precision: bf16 where supported, else fp16 on CUDA; on CPU bf16 if supported, else fp32."))
    # Same defaults as TrainingArguments; redeclared only to state their ranges.
    per_device_train_batch_size: int = arg(8, range="[1, inf)", help="Images per batch per process (training).")
    per_device_eval_batch_size: int = arg(8, range="[1, inf)", help="Images per batch per process (evaluation).")
    num_train_epochs: float = arg(3.0, range="(0, inf)", help="Epochs (max_steps > 0 wins).")
    gradient_accumulation_steps: int = arg(1, range="[1, inf)", help="Batches per optimizer step.")

    def check_command_line(self, given: set[str], source: str) -> None:
        """Kept for `--schedule auto`, which derives what the command line did not type."""
        self.typed_fields = sorted(given)
