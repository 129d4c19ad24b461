"""The entry points' arguments put together: `parse_config` for training, `parse_evaluate_args` for evaluation, and
`DetectionTrainingArguments` (the recipe's `TrainingOptions` over transformers' `TrainingArguments`).

The dataclasses live in `recipe/config/arguments.py` (shared) and `recipe/config/command_arguments.py` (each
command's own), which command takes which in `recipe/config/commands.py`, the parser machinery in
`recipe/config/parser.py`; `parse_command` parses any command of the table.

`python scripts/train.py CONFIG.yaml [--field value ...]`; the original script's dashed spellings
(`--train-img`, `--num-epochs`, `--batch-size`, ...) are accepted too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from transformers import TrainingArguments

from recipe.config.arguments import DataArguments, EvalArguments, ModelArguments, TrainingOptions
from recipe.config.commands import COMMANDS
from recipe.config.fields import check_fields
from recipe.config.parser import parse_args
from recipe.core.errors import ConfigError


@dataclass
class DetectionTrainingArguments(TrainingOptions, TrainingArguments):
    """TrainingArguments with the defaults this task needs and the recipe's own options (`TrainingOptions`)."""

    _argument_group_name = "training (the recipe's defaults; every transformers.TrainingArguments field)"

    def __post_init__(self):
        check_fields(self)
        if self.output_dir and Path(self.output_dir).is_file():
            raise ConfigError(f"output_dir {self.output_dir} is a file; give a folder (it receives the model, "
                              "checkpoints and reports)")
        if self.early_stopping_patience is not None:
            if str(self.eval_strategy) in ("no", "IntervalStrategy.NO"):
                raise ConfigError("early_stopping_patience needs evaluations during training: set eval_strategy "
                                  "(epoch or steps) and a validation set")
            # The Trainer's EarlyStoppingCallback reads metric_for_best_model and keeps the best checkpoint only
            # with load_best_model_at_end, whose checkpoints must fall on evaluation steps.
            self.load_best_model_at_end, self.metric_for_best_model, self.greater_is_better = True, "eval_map", True
            self.save_strategy = self.eval_strategy
            if self.eval_steps is not None:
                self.save_steps = self.eval_steps
        super().__post_init__()

    # training_args.bin, which the Trainer pickles into output_dir and every checkpoint (torch.save(self.args)),
    # is a pickle of these arguments, hub_token included; those folders get pushed and shared. Pickles carry no
    # token; in-memory copies keep it (the Trainer reads it from the live object when it pushes).
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


def parse_command(argv: list[str] | None, prog: str) -> tuple:
    """`prog`'s arguments, as the one table of commands (`recipe/config/commands.py`) says: one instance of each of
    its dataclasses, in the table's order (detr-train: DetectionTrainingArguments in TrainingOptions' place)."""
    command = COMMANDS[prog]
    dataclasses_ = tuple(DetectionTrainingArguments if d is TrainingOptions else d for d in command.dataclasses)
    return parse_args(argv, dataclasses_, aliases=command.aliases, defaults=command.defaults, prog=prog,
                      only=command.only)


class TrainConfig(NamedTuple):
    """What `recipe.training.run.run` takes: `run(*parse_config(argv))`."""

    data: DataArguments
    model: ModelArguments
    training: DetectionTrainingArguments
    eval: EvalArguments


def parse_config(argv: list[str] | None) -> TrainConfig:
    """The training entry point's arguments: `run(*parse_config(["configs/demo.yaml", "--max_steps", "50"]))`."""
    config = TrainConfig(*parse_command(argv, "detr-train"))
    config.data.check_validation_pair()
    return config


def parse_evaluate_args(argv: list[str] | None) -> tuple:
    """The evaluate entry point's arguments: (DataArguments, ModelArguments, EvalArguments, EvaluateScriptArguments,
    TileArguments).

    Two modes: a results file (`--gt` = val_ann, `--predictions`) or a saved model (`--model` =
    model_name_or_path, `--images` = val_img, `--ann` = val_ann)."""
    data, model, eval_args, script, tile = parse_command(argv, "detr-evaluate")
    if script.predictions:
        usable = data.val_ann and not model.model_name_or_path
    else:
        usable = ((data.val_ann and data.val_img) or data.dataset) and model.model_name_or_path
    if not usable:
        raise ConfigError("give either --gt and --predictions, or --model with --dataset (or --images and --ann)")
    if script.predictions and tile.on:
        raise ConfigError(f"--tile {tile.tile} runs a model (--model); a results file (--predictions) is scored as "
                          "it is: drop --tile")
    return data, model, eval_args, script, tile
