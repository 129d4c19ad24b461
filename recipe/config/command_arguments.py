"""Each entry point's own arguments (evaluate, predict, check, browse, export, the demo data, the BDD100K converter),
beside the shared ones of `recipe/config/arguments.py`. Light on purpose (no torch or transformers at import): `--help`
and `docs/config.md` are built from them without loading a model library.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from recipe.config.arguments import DatasetArguments
from recipe.config.fields import DASHED_ALIASES, arg, check_fields, check_writable_file
from recipe.core.errors import ConfigError
from recipe.data import choices

# The data layer's registry of names (recipe/data/choices.py: no imports, so this module stays light).
ANNOTATION_FORMATS = list(choices.ANNOTATION_FORMATS)
IMAGE_CHECKS = list(choices.IMAGE_CHECKS)
RESULT_FORMATS = list(choices.RESULT_FORMATS)
BOX_CONVENTIONS = list(choices.BOX_CONVENTIONS)
SPLITS = list(choices.SPLITS)
FILE_FORMATS = [f for f in ANNOTATION_FORMATS if f != "auto"]  # what a writer writes: a named format


@dataclass
class TileArguments:
    """Tiled inference (SAHI's sliced + standard prediction), shared by detr-predict and detr-evaluate --model."""

    tile: int | None = arg(None, help=(
        "Also detect in windows of TILE x TILE image pixels, each resized as a whole image is, and merge the boxes "
        "(small objects in large frames; see docs/guide.md 'Tiled inference'). 0 or unset: off."))
    tile_overlap: float = arg(0.2, range="[0, 0.9)", help="With --tile: the fraction of a window its neighbour shares.")
    tile_merge: str = arg("nms", choices=["nms", "wbf"], help=(
        "With --tile: class-wise NMS (keep the best box of each overlapping group) or weighted box fusion."))
    tile_full_frame: bool = arg(True, help="With --tile: also detect in the whole image, as SAHI does.")

    def __post_init__(self):
        check_fields(self)
        if self.tile is not None and self.tile != 0 and self.tile < 32:
            raise ConfigError(f"--tile {self.tile}: a window must be at least 32 pixels (0 turns tiling off)")
        changed = [f"--{name}" for name, default in (("tile_overlap", 0.2), ("tile_merge", "nms"),
                                                     ("tile_full_frame", True)) if getattr(self, name) != default]
        if changed and not self.tile:  # a flag without effect is a silent mistake
            raise ConfigError(f"{', '.join(changed)}: take effect with --tile SIZE only; add it or drop them")

    @property
    def on(self) -> bool:
        return bool(self.tile)


@dataclass
class EvaluateScriptArguments:
    """What the evaluate entry point reads and writes, and how it batches (training takes these from
    DetectionTrainingArguments, under the same names)."""

    predictions: str | None = arg(None, help=(
        "A results file to score against --gt (COCO results json, or a BDD100K frame list with --format bdd100k)."))
    output: str | None = arg(None, help="Where to write the metrics JSON.")
    predictions_out: str | None = arg(None, help="With --model: also write the kept detections here.")
    split: str = arg("validation", choices=SPLITS, help="With --dataset: the split to evaluate.")
    predictions_format: str = arg("coco", choices=RESULT_FORMATS, help=(
        "--predictions-out as COCO results or as a BDD100K frame list (labels with a score)."))
    plots: str | None = arg(None, help=(
        "Also write the error-analysis figures (PR curves, per-class AP, confusion matrix, COCO error breakdown; "
        "with --model also images next to their detections) into this folder, each with its numbers as JSON."))
    per_device_eval_batch_size: int = arg(8, range="[1, inf)", help="With --model: images per batch per process.")
    dataloader_num_workers: int = arg(2, range="[0, inf)", help="With --model: data loading worker processes.")

    def __post_init__(self):
        check_fields(self)
        for name in ("output", "predictions_out"):
            check_writable_file(name, getattr(self, name))


# scripts/evaluate.py's original flags.
EVALUATE_ALIASES = {
    **DASHED_ALIASES,
    "--gt": ["--val_ann"],
    "--ann": ["--val_ann"],
    "--images": ["--val_img"],
    "--model": ["--model_name_or_path"],
    "--format": ["--annotation_format"],
}
# What detr-evaluate reads (its --help shows only these; a training flag given to it is an error saying so).
EVALUATE_FIELDS = {
    "val_img", "val_ann", "annotation_format", "box_convention", "bdd_image_size", "dataset_cache_dir", "image_check",
    "skip_bad_images", "model_name_or_path", "offline", "score_threshold", "top_k", "metric_backend",
    *(f.name for f in dataclasses.fields(DatasetArguments)),
    *(f.name for f in dataclasses.fields(EvaluateScriptArguments)),
    *(f.name for f in dataclasses.fields(TileArguments))}



DEFAULT_THRESHOLD = 0.3



@dataclass
class PredictArguments:
    model: str = field(metadata={"help": "A trained output folder, a checkpoint folder, a Hub id (any "
                                         "AutoModelForObjectDetection with its image processor), or an .onnx "
                                         "file written by detr-export (run with ONNX Runtime)."})
    images: str | None = field(default=None, metadata={
        "help": "An image file, a folder (its image files, sorted) or a glob pattern (or --dataset and --split)."})
    threshold: float | None = field(default=None, metadata={
        "help": "Keep detections scoring above this (0 keeps the top_k of every image: the COCO protocol). "
                "Default: the model's `suggested_threshold` (best F1 on its validation set, written by training), "
                f"else {DEFAULT_THRESHOLD}."})
    output: str = field(default="predictions", metadata={
        "help": "Output folder: predictions.json and the drawn images under images/."})
    format: str = field(default="coco", metadata={
        "help": "predictions.json as COCO results (with file_name) or a BDD100K frame list.",
        "choices": RESULT_FORMATS})
    batch_size: int = field(default=8, metadata={"help": "Images per forward pass."})
    device: str = field(default="auto", metadata={"help": "auto (cuda, else mps, else cpu), cpu, cuda, cuda:1, ..."})
    top_k: int = field(default=100, metadata={"help": "Detections kept per image before the threshold (COCO: 100)."})
    draw: bool = field(default=True, metadata={"help": "Write the images with their boxes drawn."})
    num_workers: int = field(default=0, metadata={"help": "Image decoding worker processes."})
    dataset_cache_dir: str | None = field(default=None, metadata={
        "help": "With --dataset: the Arrow cache folder of its tables (default: the datasets cache)."})
    box_convention: str = field(default="inclusive", metadata={
        "help": "--format bdd100k: box2d inclusive (x2 = x + w - 1, current toolkit) or exclusive.",
        "choices": BOX_CONVENTIONS})


@dataclass
class CheckDataArguments:
    ann: str | None = field(default=None, metadata={"help": "Annotation file: COCO json or a BDD100K frame list."})
    images: str | None = field(default=None, metadata={
        "help": "The image folder the annotation file's names are relative to."})
    format: str = field(default="auto", metadata={
        "help": "auto (a JSON object is COCO, a JSON list BDD100K), coco or bdd100k.", "choices": ANNOTATION_FORMATS})
    box_convention: str = field(default="inclusive", metadata={
        "help": "BDD100K box2d: inclusive (w = x2 - x1 + 1) or exclusive (2021 toolkit).",
        "choices": BOX_CONVENTIONS})
    bdd_image_size: list[int] = field(default_factory=lambda: [1280, 720], metadata={
        "help": "Width and height of BDD100K frames (the label files do not carry them)."})
    image_check: str = field(default="decode", metadata={
        "help": "decode: every image decoded; header: sizes from headers only (truncation not found); "
                "exists: files only.", "choices": IMAGE_CHECKS})
    workers: int | None = field(default=None, metadata={"help": "Threads that decode images (default: cores, <= 8)."})
    report: str | None = field(default=None, metadata={"help": "Also write the data report here (JSON)."})

    def __post_init__(self):
        if len(self.bdd_image_size) != 2 or min(self.bdd_image_size) <= 0:
            raise ConfigError(f"--bdd_image_size {self.bdd_image_size}: give two positive integers, width height")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be >= 1")
        if self.report and os.path.isdir(self.report):
            raise ConfigError(f"--report {self.report}: is a folder; give a file name")


@dataclass
class BrowseArguments:
    ann: str | None = field(default=None, metadata={"help": "Annotation file (COCO json or BDD100K frame list)."})
    images: str | None = field(default=None, metadata={"help": "Image folder of the annotation file."})
    output: str = field(default="grid.jpg", metadata={"help": "The grid image to write (its JSON goes beside it)."})
    augment: str | None = field(default=None, metadata={
        "help": "A config YAML (e.g. configs/demo.yaml): draw the images after its training augmentation."})
    augment_epoch: int | None = field(default=None, metadata={
        "help": "With --augment and a preset that changes by epoch (rtdetr, deim, rfdetr): the epoch to show "
                "(default: the first with every op on, e.g. deim's Mosaic and MixUp)."})
    num_images: int = field(default=12, metadata={"help": "Images in the sample."})
    seed: int = field(default=0, metadata={"help": "Seed of the sample and of the augmentation."})
    columns: int = field(default=4, metadata={"help": "Grid columns."})
    cell_width: int = field(default=400, metadata={"help": "Width of each image in the grid, in pixels."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Arrow cache folder of the tables."})
    format: str = field(default="auto", metadata={
        "help": "auto (a JSON object is COCO, a JSON list BDD100K), coco or bdd100k.", "choices": ANNOTATION_FORMATS})
    box_convention: str = field(default="inclusive", metadata={
        "help": "BDD100K box2d: inclusive (w = x2 - x1 + 1) or exclusive (2021 toolkit).", "choices": BOX_CONVENTIONS})
    bdd_image_size: list[int] = field(default_factory=lambda: [1280, 720], metadata={
        "help": "Width and height of BDD100K frames (the label files do not carry them)."})


@dataclass
class CompareArguments:
    families: list[str] | None = arg(None, help=(
        "The families to compare: each a config name of configs/ (rt_detr, d_fine, deimv2, lw_detr, rf_detr, "
        "rt_detr_v2, deformable_detr_coco, ...) or a training YAML, trained with its own recipe. A plan YAML "
        "(first argument) may give them with per-family overrides instead."))
    output_dir: str = arg("outputs/compare", help=(
        "Folder of the comparison: one run folder per family, leaderboard.md / .json / .png."))
    budget: str | None = arg(None, help=(
        "Training time per family: 90s, 30m, 2h (its steps from a timed probe of probe_steps steps). Unset: each "
        "family's own schedule (or --max_steps / --num_train_epochs, given with the training flags)."))
    probe_steps: int = arg(8, range="[2, inf)", help="With --budget: the steps timed to size each family's run.")
    latency_images: int = arg(20, range="[1, inf)", help=(
        "ONNX Runtime latency: the median of this many batch-1 calls of each exported graph at its frame."))
    latency_threads: int = arg(1, range="[1, inf)", help="ONNX Runtime's intra-op threads for the latency.")

    def __post_init__(self):
        check_fields(self)


@dataclass
class SearchArguments:
    trials: int | None = arg(None, required=True, range="[1, inf)", help=(
        "Trials to reach: finished ones (complete or pruned) in OUTPUT_DIR/search.db count, so a rerun runs only "
        "those missing."))
    budget: list[str] | None = arg(None, help=(
        "Schedule lengths to choose from: 40steps 80steps (max_steps), 2epochs 4epochs (num_train_epochs), or bare "
        "numbers in the config's own unit (steps if it sets max_steps, else epochs). Unset: the config's schedule."))
    output_dir: str = arg("outputs/search", help=(
        "Folder of the search: search.db (the optuna study), trial-<n>/, search.md / .json and best.yaml."))
    pruner_startup_trials: int = arg(3, range="[0, inf)", help=(
        "Trials run to their end before the median pruner stops a trial whose eval_map falls below the median of "
        "the earlier trials at the same step."))

    def __post_init__(self):
        check_fields(self)


# LayerNormalization, which the transformer layers export to, exists from opset 17 (onnx Operators.md); TensorRT
# parses it from 10.x. Older opsets split it into primitive ops that overflow in fp16 (DEIM #107, D-FINE #98).
MIN_OPSET = 17


@dataclass
class ExportArguments:
    model: str | None = arg(None, required=True, help=(
        "A trained output folder, a checkpoint folder, or a cached Hub id (AutoModelForObjectDetection)."))
    output: str | None = arg(None, required=True, help=(
        "The file to write: .onnx (--format onnx) or .xml (--format openvino, with its .bin); what inference needs "
        "goes beside it as OUTPUT.json (with the data: the file's measured map and latency)."))
    opset: int = arg(MIN_OPSET, range=f"[{MIN_OPSET}, 23]", help=(
        "ONNX opset (>= 17: LayerNormalization; TensorRT >= 10.6 for fp16 engines of these models)."))
    dynamic_batch: bool = arg(False, help="Any batch size (else the graph takes batch 1).")
    fp16: bool = arg(False, help=(
        "Weights and arithmetic in float16 (for GPU runtimes); inputs and outputs stay float32."))
    image_size: list[int] | None = arg(None, length=2, range="[1, inf)", help=(
        "The graph's frame H W (default: the processor's canvas, or its eval size: shortest_edge x longest_edge). "
        "Images are resized as in evaluation and padded to it (smaller ones: as in a training batch; a mask-reading "
    "model then scores them as PyTorch does only when its batches have that size too); a larger one is an error."))
    format: str = arg("onnx", choices=["onnx", "openvino"], help=(
        "onnx (ONNX Runtime) or openvino (an IR .xml with its .bin, converted from the ONNX graph and checked against "
        "PyTorch as the ONNX graph is; pip install -e '.[openvino]')."))
    int8: bool = arg(False, help=(
        "Post-training INT8: ONNX Runtime static QDQ (onnx) or NNCF (openvino), calibrated on --calibration_images "
        "training images; needs the data (--dataset, or --train_ann/--train_img and --val_ann/--val_img)."))
    calibration_images: int = arg(100, range="[8, inf)", help="--int8: training images to calibrate on (seeded draw).")
    int8_float_ops: list[str] = arg(default_factory=lambda: ["LayerNormalization", "GridSample", "Softmax"],
                                    choices=["LayerNormalization", "GridSample", "Softmax"], help=(
        "--int8: operators kept in float (the originals' fp16 exports broke in them); listed in the sidecar."))
    threads: int = arg(1, range="[1, inf)", help=(
        "Threads of the latency measured with the data given (exported file and PyTorch alike)."))

    def __post_init__(self):
        check_fields(self)


# What detr-export reads of the data flags: where the calibration images (training split) and the validation set of
# the measured map come from.
EXPORT_DATA_FIELDS = {
    "train_img", "train_ann", "val_img", "val_ann", "annotation_format", "box_convention", "bdd_image_size",
    "dataset_cache_dir", *(f.name for f in dataclasses.fields(DatasetArguments))}
EXPORT_FIELDS = EXPORT_DATA_FIELDS | {f.name for f in dataclasses.fields(ExportArguments)}


@dataclass
class DemoDataArguments:
    output: str | None = arg(None, required=True, help="Folder to write train/ and val/ into.")
    seed: int = arg(0, help="Random seed of the generator.")
    num_train: int = arg(400, range="[1, inf)", help="Training images.")
    num_val: int = arg(50, range="[0, inf)", help="Validation images.")
    image_size: list[int] = arg(default_factory=lambda: [320, 240], length=2, range="[32, inf)",
                                help="Width and height of the images.")
    annotation_format: str = arg("coco", choices=FILE_FORMATS, aliases=["--format"], help=(
        "coco: COCO json; bdd100k: BDD100K frame lists (inclusive box2d)."))
    # synthetic.CATEGORIES (tests/test_sampling.py checks both agree)
    rare_class: str | None = arg(None, choices=["car", "truck", "pedestrian", "traffic light", "traffic sign"], help=(
        "An imbalanced training split: this class drawn rare_fraction times as often (the validation split keeps "
        "the usual mix)."))
    rare_fraction: float = arg(0.05, range="(0, 1]", help="With rare_class: how often it is drawn, relative to usual.")
    large_frame: bool = arg(False, help=(
        "Each image a 4 x 3 grid of scenes of --image_size (1280x720 at the default): many small objects per "
        "high-resolution frame, for tiled inference (--tile)."))

    def __post_init__(self):
        check_fields(self)
        if Path(self.output).is_file():
            raise ConfigError(f"output {self.output} is a file; give a folder")


@dataclass
class ConvertArguments:
    labels: str | None = arg(None, required=True, help="BDD100K / Scalabel label json (a list of frames).")
    output: str | None = arg(None, required=True, help="Where to write the COCO json.")
    box_convention: str = arg("inclusive", choices=BOX_CONVENTIONS, help=(
        "inclusive: w = x2 - x1 + 1 (current toolkit); exclusive: w = x2 - x1 (2021 toolkit)."))

    def __post_init__(self):
        check_fields(self)
        check_writable_file("output", self.output)
