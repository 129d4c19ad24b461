"""The one table of commands: for each entry point, the argument dataclasses it parses, its extra spellings, the
fields it reads and its own defaults. The parser (`config.load.parse_command`), `--help` (`recipe/cli/help.py`) and
the options reference (`docs/config.md`) all read it. Light: no torch or transformers at import."""

from __future__ import annotations

from typing import NamedTuple

from recipe.config.arguments import (
    DataArguments,
    DatasetArguments,
    DatasetSplitArguments,
    EvalArguments,
    ModelArguments,
    TrainingOptions,
)
from recipe.config.command_arguments import (
    EVALUATE_ALIASES,
    EVALUATE_FIELDS,
    EXPORT_FIELDS,
    BrowseArguments,
    CheckDataArguments,
    CompareArguments,
    ConvertArguments,
    DemoDataArguments,
    EvaluateScriptArguments,
    ExportArguments,
    PredictArguments,
    SearchArguments,
    TileArguments,
)
from recipe.config.fields import DASHED_ALIASES


class Command(NamedTuple):
    """What one entry point parses: its dataclasses, extra spellings and the fields it reads (None: all)."""

    dataclasses: tuple
    description: str
    aliases: dict = DASHED_ALIASES
    only: frozenset | None = None
    defaults: dict | None = None  # the entry point's own defaults, over the dataclasses'


# detr-train: TrainingOptions stands for DetectionTrainingArguments (config/load.py), whose other fields are
# transformers' own TrainingArguments.
COMMANDS = {
    "detr-train": Command((DataArguments, ModelArguments, TrainingOptions, EvalArguments),
                          "Fine-tune a DETR-family detector, evaluate it, write a Hub-style model folder."),
    "detr-evaluate": Command((DataArguments, ModelArguments, EvalArguments, EvaluateScriptArguments, TileArguments),
                             "Score a results file (--gt --predictions) or a saved model (--model with --dataset, "
                             "or --images and --ann) with COCOeval.", EVALUATE_ALIASES, frozenset(EVALUATE_FIELDS),
                             {"model_name_or_path": None}),
    "detr-predict": Command((PredictArguments, DatasetSplitArguments, TileArguments),
                            "Detect objects in images (--images, or --dataset and --split), writing "
                            "predictions.json and the drawn images."),
    "detr-check-data": Command((CheckDataArguments, DatasetArguments),
                               "Check a dataset without training (exit 0 clean, 1 problems found, 2 unusable)."),
    "detr-browse-dataset": Command((BrowseArguments, DatasetSplitArguments),
                                   "Draw a grid of images with their ground truth (optionally after the training "
                                   "augmentation)."),
    "detr-export": Command((ExportArguments, DataArguments), "Export a trained model to ONNX or OpenVINO (fp32 "
                           "checked against PyTorch, or INT8 calibrated on your images); with the data, the file's "
                           "map and latency next to PyTorch's.", only=frozenset(EXPORT_FIELDS)),
    # detr-compare: every flag that is not one of CompareArguments' is a training flag for every family.
    "detr-compare": Command((CompareArguments,), "Train several families on the same data and rank them: map, "
                            "training time, parameters and ONNX Runtime latency (leaderboard.md / .json / .png)."),
    # detr-search: every flag that is not one of SearchArguments' is a training flag for every trial.
    "detr-search": Command((SearchArguments,), "Search learning rate, batch size, weight decay, backbone lr, EMA decay "
                           "and schedule length with optuna (Trainer.hyperparameter_search), each trial scored by "
                           "eval_map; writes search.md / .json and best.yaml (a training config). Every other flag is "
                           "a training flag, as detr-train takes it."),
    "detr-convert-bdd100k": Command((ConvertArguments,), "Convert a BDD100K / Scalabel label file to COCO json."),
    "detr-make-demo-data": Command((DemoDataArguments,), "Write the synthetic traffic-scenes demo data."),
}
