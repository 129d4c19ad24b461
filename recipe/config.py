"""Configuration of every entry point: dataclass defaults < YAML file < command line. Unknown keys are errors.

`parse_args(argv, dataclasses)` is the one parser (train, evaluate, predict, convert, check, benchmarks):
`[CONFIG.yaml] [--field value ...]`, snake_case flags with dashed twins (`--train_img` / `--train-img`), plus
the dashed aliases of `DASHED_ALIASES` (the original script's spellings). Allowed values are declared in each
field's metadata (`choices`, `range`, `length`, `required`) and checked when the dataclass is built, so a bad
value is one `ConfigError` line before any data or model is loaded.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from types import UnionType
from typing import NamedTuple, Union, get_args, get_origin, get_type_hints

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .errors import ConfigError

# Metadata keys checked here; HfArgumentParser never sees them (it would pass them to argparse).
CHECK_KEYS = ("choices", "range", "length", "required")


def arg(default=MISSING, *, help: str, default_factory=MISSING, choices=None, range: str | None = None,
        length: int | None = None, required: bool = False, aliases: list[str] | None = None):
    """A dataclass field with its help and the constraints `check_fields` enforces.

    range: an interval such as "[1, inf)" or "(0, 1]"; for a list, every element must lie in it.
    required: None is not accepted (give the flag or the YAML key)."""
    metadata = {"help": help}
    for key, value in (("choices", choices), ("range", range), ("length", length), ("required", required or None),
                       ("aliases", aliases)):
        if value is not None:
            metadata[key] = value
    return field(default=default, default_factory=default_factory, metadata=metadata)


# ---------------------------------------------------------------------------------------------- dataclasses


@dataclass
class DataArguments:
    train_img: str | None = arg(None, help="Training image folder.")
    train_ann: str | None = arg(None, help="Training annotation file (COCO json or BDD100K frame list).")
    val_img: str | None = arg(None, help="Validation image folder.")
    val_ann: str | None = arg(None, help="Validation annotation file (COCO json or BDD100K frame list).")
    annotation_format: str = arg("auto", choices=["auto", "coco", "bdd100k"], help=(
        "auto (a JSON object is COCO, a JSON list a BDD100K frame list), coco or bdd100k."))
    box_convention: str = arg("inclusive", choices=["inclusive", "exclusive"], help=(
        "BDD100K box2d: inclusive (w = x2 - x1 + 1, current toolkit) or exclusive (w = x2 - x1, 2021)."))
    bdd_image_size: list[int] = arg(default_factory=lambda: [1280, 720], length=2, range="[1, inf)", help=(
        "Width and height of BDD100K frames (the label files do not carry them)."))
    subset: int | None = arg(None, range="[1, inf)", help="Use only the first N images (by id) of each split.")
    demo_data: str | None = arg(None, help=(
        "If set and the annotation files are missing, generate the synthetic demo data in this folder."))
    dataset_cache_dir: str | None = arg(None, help="Arrow cache folder (default: the datasets cache, under HF_HOME).")
    shortest_edges: list[int] = arg(default_factory=lambda: [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800],
                                    range="[1, inf)", help="Train: shortest edge drawn from this list (multi-scale).")
    longest_edge: int = arg(1333, range="[1, inf)", help="Cap on the longest edge (train and eval).")
    eval_size: int = arg(800, range="[1, inf)", help="Eval: shortest edge.")
    hflip_prob: float = arg(0.5, range="[0, 1]", help="Train: horizontal flip probability.")
    crop_prob: float = arg(0.0, range="[0, 1]", help="Train: probability of a bbox-safe random crop.")
    color_jitter_prob: float = arg(0.5, range="[0, 1]", help="Train: probability of a mild colour jitter.")

    def __post_init__(self):
        check_fields(self)

    def check_validation_pair(self) -> None:
        """Training: a validation split needs both its images and its annotations (evaluate's --gt alone is fine)."""
        for given, missing in (("val_ann", "val_img"), ("val_img", "val_ann")):
            if getattr(self, given) and not getattr(self, missing):
                raise ConfigError(f"{given} is set but {missing} is not: give both the validation image folder "
                                  "(--val-img) and its annotation file (--val-ann), or neither")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = arg("SenseTime/deformable-detr", help=(
        "Hub id, local folder or cached model. Ignored when model_config is given."))
    model_config: str | None = arg(None, help=(
        "A model config (JSON object, or a mapping in YAML) to build a randomly initialised model; "
        "used for tiny models trained from scratch."))
    random_init: bool = arg(False, help=(
        "Build model_name_or_path's architecture with random weights (explicit opt-in; said loudly)."))
    offline: bool = arg(False, help="Never touch the network (same as HF_HUB_OFFLINE=1).")
    ignore_mismatched_sizes: bool = arg(True, help=(
        "Re-initialise the classification head when the class count differs from the checkpoint."))
    train_backbone_stem: bool | None = arg(None, help=(
        "Train the backbone's stem and first stage too (default: yes for random weights, "
        "no for pretrained, as in the original recipe)."))
    auxiliary_loss: bool = arg(True, help="Decoder auxiliary losses (original: on).")
    class_cost: float = arg(2.0, range="[0, inf)", help="Hungarian matching cost of the class (original: 2).")
    bbox_cost: float = arg(5.0, range="[0, inf)", help="Matching cost of the L1 box distance.")
    giou_cost: float = arg(2.0, range="[0, inf)", help="Matching cost of the GIoU.")
    class_loss_coefficient: float = arg(2.0, range="[0, inf)", help="Weight of loss_ce (original: 2).")
    bbox_loss_coefficient: float = arg(5.0, range="[0, inf)", help="Weight of loss_bbox.")
    giou_loss_coefficient: float = arg(2.0, range="[0, inf)", help="Weight of loss_giou.")
    backbone_lr_multiplier: float = arg(0.1, range="[0, inf)", help="Backbone lr = lr x this.")
    linear_proj_lr_multiplier: float = arg(0.1, range="[0, inf)", help=(
        "sampling_offsets / reference_points lr = lr x this."))

    def __post_init__(self):
        check_fields(self)
        config = parse_model_config(self.model_config)
        model_type = config.get("model_type", "deformable_detr") if config is not None else \
            local_model_type(self.model_name_or_path)
        if model_type is not None:
            check_whole_numbers(self, model_type)


@dataclass
class EvalArguments:
    """How detections are kept and scored (training's evaluation and the evaluate entry point)."""

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
class EvaluateScriptArguments:
    """What the evaluate entry point reads and writes, and how it batches (training takes these from
    DetectionTrainingArguments, under the same names)."""

    predictions: str | None = arg(None, help=(
        "A results file to score against --gt (COCO results json, or a BDD100K frame list with --format bdd100k)."))
    output: str | None = arg(None, help="Where to write the metrics JSON.")
    predictions_out: str | None = arg(None, help="With --model: also write the kept detections here.")
    predictions_format: str = arg("coco", choices=["coco", "bdd100k"], help=(
        "--predictions-out as COCO results or as a BDD100K frame list (labels with a score)."))
    per_device_eval_batch_size: int = arg(8, range="[1, inf)", help="With --model: images per batch per process.")
    dataloader_num_workers: int = arg(2, range="[0, inf)", help="With --model: data loading worker processes.")

    def __post_init__(self):
        check_fields(self)
        for name in ("output", "predictions_out"):
            check_writable_file(name, getattr(self, name))


@dataclass
class DetectionTrainingArguments(TrainingArguments):
    """TrainingArguments with the defaults this task needs (each changed default says why)."""

    output_dir: str | None = arg("outputs/deformable-detr", help="Output folder.")
    # The transform needs the image path and objects columns, which the Trainer would drop (#17894).
    remove_unused_columns: bool = arg(False, help="Keep False for detection.")
    # Per-image label dicts must not be concatenated across batches (#25939).
    eval_do_concat_batches: bool = arg(False, help="Keep False for detection.")
    # Compute COCO metrics batch by batch so eval memory does not grow with all model outputs (#34675).
    batch_eval_metrics: bool = arg(True, help="Keep True for detection.")
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
    amp: bool = arg(False, help=(
        "Mixed precision: bf16 where supported, else fp16 on CUDA; on CPU bf16 if supported, else fp32."))
    # Same defaults as TrainingArguments; redeclared only to state their ranges.
    per_device_train_batch_size: int = arg(8, range="[1, inf)", help="Images per batch per process (training).")
    per_device_eval_batch_size: int = arg(8, range="[1, inf)", help="Images per batch per process (evaluation).")
    num_train_epochs: float = arg(3.0, range="(0, inf)", help="Epochs (max_steps > 0 wins).")
    gradient_accumulation_steps: int = arg(1, range="[1, inf)", help="Batches per optimizer step.")

    def __post_init__(self):
        check_fields(self)
        if self.output_dir and Path(self.output_dir).is_file():
            raise ConfigError(f"output_dir {self.output_dir} is a file; give a folder (it receives the model, "
                              "checkpoints and reports)")
        super().__post_init__()

    # training_args.bin, which the Trainer pickles into output_dir and every checkpoint, is a pickle of these
    # arguments, hub_token included (FACTS.md); those folders get pushed and shared. Pickles carry no token;
    # in-memory copies keep it (the Trainer reads it from the live object when it pushes).
    def __getstate__(self):
        return {**self.__dict__, "hub_token": None}

    def __copy__(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


@dataclass
class DemoDataArguments:
    output: str | None = arg(None, required=True, help="Folder to write train/ and val/ into.")
    seed: int = arg(0, help="Random seed of the generator.")
    num_train: int = arg(400, range="[1, inf)", help="Training images.")
    num_val: int = arg(50, range="[0, inf)", help="Validation images.")
    image_size: list[int] = arg(default_factory=lambda: [320, 240], length=2, range="[32, inf)",
                                help="Width and height of the images.")
    annotation_format: str = arg("coco", choices=["coco", "bdd100k"], aliases=["--format"], help=(
        "coco: COCO json; bdd100k: BDD100K frame lists (inclusive box2d)."))

    def __post_init__(self):
        check_fields(self)
        if Path(self.output).is_file():
            raise ConfigError(f"output {self.output} is a file; give a folder")


@dataclass
class ConvertArguments:
    labels: str | None = arg(None, required=True, help="BDD100K / Scalabel label json (a list of frames).")
    output: str | None = arg(None, required=True, help="Where to write the COCO json.")
    box_convention: str = arg("inclusive", choices=["inclusive", "exclusive"], help=(
        "inclusive: w = x2 - x1 + 1 (current toolkit); exclusive: w = x2 - x1 (2021 toolkit)."))

    def __post_init__(self):
        check_fields(self)
        check_writable_file("output", self.output)


# ------------------------------------------------------------------------------------------------ checks


def check_fields(obj) -> None:
    """Type, choices, range, length and required of every field of a dataclass instance, from its metadata."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, None)
        if value is None:
            if f.metadata.get("required"):
                raise ConfigError(f"{f.name} is required: pass --{f.name} VALUE or set it in the YAML file")
            continue
        check_type(f.name, value, field_types(type(obj))[f.name])
        meta = f.metadata
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{f.name}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
        if "length" in meta and len(value) != meta["length"]:
            raise ConfigError(f"{f.name} takes {meta['length']} values, got {len(value)}: {value}")
        for item in value if isinstance(value, list) else [value]:
            if "range" in meta and not in_range(item, meta["range"]):
                raise ConfigError(f"{f.name} must be in {meta['range']}, got {item!r}")


SIMPLE_TYPES = (int, float, str, bool)


def check_type(name: str, value, annotation) -> None:
    """Values from YAML reach the dataclass as YAML typed them (argparse converts only strings): check the
    plain ones (int, float, str, bool, list[int], optionals of these); other annotations are left alone."""
    kind = simple_type(annotation)
    if kind is None:
        return
    container, item_type = kind
    if container is list and not isinstance(value, list):
        raise ConfigError(f"{name} takes a list of {item_type.__name__}, got {value!r}")
    for item in value if container is list else [value]:
        if isinstance(item, bool) != (item_type is bool) or not isinstance(
                item, (int, float) if item_type is float else item_type):
            raise ConfigError(f"{name} takes {'a list of ' if container else ''}{item_type.__name__} "
                              f"values, got {item!r}")


def simple_type(annotation) -> tuple | None:
    """-> (None, int) for int / int | None, (list, int) for list[int], None for anything else."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return simple_type(args[0])
    if get_origin(annotation) is list and len(args) == 1 and args[0] in SIMPLE_TYPES:
        return list, args[0]
    return (None, annotation) if annotation in SIMPLE_TYPES else None


@functools.cache
def field_types(cls) -> dict:
    """Resolved annotations of a dataclass (this module postpones them)."""
    return get_type_hints(cls)


def in_range(value, interval: str) -> bool:
    """`interval` like "[1, inf)": square brackets include the bound, round ones exclude it."""
    low, high = (float(v) for v in interval[1:-1].split(","))
    if isinstance(value, float) and math.isnan(value):
        return False
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def check_writable_file(name: str, path: str | None) -> None:
    if path and Path(path).is_dir():
        raise ConfigError(f"{name} {path} is a folder; give a file name (e.g. {Path(path) / 'metrics.json'})")


def parse_model_config(text: str | None) -> dict | None:
    """model_config (a JSON object) -> dict, or None when not given."""
    if text is None:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"model_config is not valid JSON ({e.msg} at character {e.pos}): {text[:60]!r}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"model_config must be a JSON object of config fields, got {text[:60]!r}")
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type", "deformable_detr")
    if model_type not in CONFIG_MAPPING:
        raise ConfigError(f"model_config: unknown model_type {model_type!r} (transformers has no such config)")
    return config


def local_model_type(name_or_path: str | None) -> str | None:
    """The model_type of a local folder or an already-cached Hub model (no network); None when unknown."""
    if not name_or_path:
        return None
    path = Path(name_or_path) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name_or_path, "config.json")
        except Exception:  # noqa: BLE001 - an id the hub library cannot parse is simply "not cached"
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None  # the model loader reports unreadable configs, naming the file


def check_whole_numbers(model_args: ModelArguments, model_type: str) -> None:
    """Costs and loss weights that the model's config class declares as int (DETR, Deformable DETR, ... in
    transformers 5) must be whole numbers: the config's strict validation rejects 2.5 only when the model is built."""
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        return
    config_class = CONFIG_MAPPING[model_type]
    annotations = {}
    for klass in reversed(config_class.__mro__):
        annotations.update(getattr(klass, "__annotations__", {}))
    for f in dataclasses.fields(model_args):
        value = getattr(model_args, f.name)
        if annotations.get(f.name) in (int, "int") and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{f.name} must be a whole number for {model_type} models "
                              f"({config_class.__name__} declares it int), got {value}")


# ------------------------------------------------------------------------------------------------ parsing

# The original script's spellings -> the fields they set (a dashed twin of every field, e.g. --train-img for
# --train_img, exists anyway). An alias is used only when the entry point's dataclasses have its targets.
DASHED_ALIASES = {
    "--num-epochs": ["--num_train_epochs"],
    "--batch-size": ["--per_device_train_batch_size", "--per_device_eval_batch_size"],
    "--num-workers": ["--dataloader_num_workers"],
    "--pretrained": ["--model_name_or_path"],
}
# scripts/evaluate.py's original flags.
EVALUATE_ALIASES = {
    **DASHED_ALIASES,
    "--gt": ["--val_ann"],
    "--ann": ["--val_ann"],
    "--images": ["--val_img"],
    "--model": ["--model_name_or_path"],
    "--format": ["--annotation_format"],
}
TRAIN_DATACLASSES = (DataArguments, ModelArguments, DetectionTrainingArguments, EvalArguments)
EVALUATE_DATACLASSES = (DataArguments, ModelArguments, EvalArguments, EvaluateScriptArguments)
DATACLASSES = TRAIN_DATACLASSES  # what configs/*.yaml may contain


class TrainConfig(NamedTuple):
    """What `recipe.train.run` takes: `run(*parse_config(argv))`."""

    data: DataArguments
    model: ModelArguments
    training: DetectionTrainingArguments
    eval: EvalArguments


class RecipeArgumentParser(HfArgumentParser):
    """HfArgumentParser whose errors are ConfigErrors (argparse would print the usage and exit), which
    recognises no abbreviations (a typo must not silently set another field), and which keeps the
    recipe's check keys out of argparse (they are enforced by `check_fields`, also for YAML values)."""

    def __init__(self, dataclass_types, **kwargs):
        super().__init__(dataclass_types, allow_abbrev=False, **kwargs)

    def error(self, message):
        raise ConfigError(message)

    @staticmethod
    def _parse_dataclass_field(parser, f):
        meta = {k: v for k, v in f.metadata.items() if k not in CHECK_KEYS}
        notes = [f"one of: {', '.join(map(str, f.metadata['choices']))}" if "choices" in f.metadata else "",
                 f"range {f.metadata['range']}" if "range" in f.metadata else "",
                 "required" if f.metadata.get("required") else ""]
        if any(notes):
            meta["help"] = f"{meta.get('help', '')} ({'; '.join(n for n in notes if n)})".strip()
        stripped = copy.copy(f)
        stripped.metadata = meta
        HfArgumentParser._parse_dataclass_field(parser, stripped)


def parse_args(argv: list[str] | None, dataclasses_: tuple, *, aliases: dict | None = None,
               defaults: dict | None = None, prog: str | None = None) -> tuple:
    """[CONFIG.yaml] [--field value ...] -> one instance of each of `dataclasses_`, in that order.

    `aliases`: extra spellings -> the flags they stand for (default `DASHED_ALIASES`); `defaults`: entry-point
    defaults below the YAML file. Every error (unknown key or flag, bad value, bad combination) is a ConfigError."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or Path(sys.argv[0]).name
    values = dict(defaults or {})
    if argv and argv[0].endswith((".yaml", ".yml")):
        values.update(load_yaml(argv.pop(0), dataclasses_, prog=prog))
    if any(issubclass(dc, TrainingArguments) for dc in dataclasses_) and launched_without_cuda():
        # Under torchrun / `accelerate launch --multi_gpu` on a machine without CUDA, the Trainer joins the
        # processes in a (gloo) group only with use_cpu=True; otherwise each trains alone, silently.
        values.setdefault("use_cpu", True)
    aliases = DASHED_ALIASES if aliases is None else aliases
    parser = RecipeArgumentParser(dataclasses_, prog=prog, usage=f"{prog} [CONFIG.yaml] [--field value ...]")
    known = set(parser._option_string_actions)
    parser.epilog = "aliases: " + "; ".join(f"{alias} = {' '.join(t for t in targets if t in known)}"
                                            for alias, targets in aliases.items() if set(targets) & known)
    parser.set_defaults(**values)
    argv = apply_aliases(argv, aliases, known)
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True,
                                                           look_for_args_file=False)
    except ValueError as e:  # TrainingArguments' own checks
        raise ConfigError(" ".join(str(e).split())) from None
    if rest:
        raise ConfigError(f"unknown argument(s) {' '.join(redact(rest))}; see `{prog} --help`")
    return tuple(parsed)


def parse_config(argv: list[str] | None) -> TrainConfig:
    """The training entry point's arguments: `run(*parse_config(["configs/demo.yaml", "--max_steps", "50"]))`."""
    config = TrainConfig(*parse_args(argv, TRAIN_DATACLASSES, prog="detr-train"))
    config.data.check_validation_pair()
    return config


def parse_evaluate_args(argv: list[str] | None) -> tuple:
    """The evaluate entry point's arguments: (DataArguments, ModelArguments, EvalArguments, EvaluateScriptArguments).

    Two modes: a results file (`--gt` = val_ann, `--predictions`) or a saved model (`--model` =
    model_name_or_path, `--images` = val_img, `--ann` = val_ann)."""
    data, model, eval_args, script = parse_args(argv, EVALUATE_DATACLASSES, aliases=EVALUATE_ALIASES,
                                                defaults={"model_name_or_path": None}, prog="detr-evaluate")
    if script.predictions:
        usable = data.val_ann and not model.model_name_or_path
    else:
        usable = data.val_ann and data.val_img and model.model_name_or_path
    if not usable:
        raise ConfigError("give either --gt and --predictions, or --model with --images and --ann")
    return data, model, eval_args, script


def apply_aliases(argv: list[str], aliases: dict, known: set[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        targets = [t for t in aliases.get(flag, []) if t in known] if flag not in known else []
        if not targets:
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


def redact(tokens: list[str]) -> list[str]:
    """Values after a flag that names a token are secrets: never echo them into logs."""
    return ["***" if i and "tok" in tokens[i - 1].lower() and not tok.startswith("-") else tok
            for i, tok in enumerate(tokens)]


def load_yaml(path: str | Path, dataclasses_: tuple = DATACLASSES, *, prog: str = "detr-train") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file is a mapping of field: value")
    known = {f.name for dc in dataclasses_ for f in dataclasses.fields(dc)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; see `{prog} --help`")
    if isinstance(values.get("model_config"), dict):
        values["model_config"] = json.dumps(values["model_config"])
    return values


def launched_without_cuda() -> bool:
    """True in a multi-process launch (WORLD_SIZE > 1) on a machine without CUDA."""
    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
