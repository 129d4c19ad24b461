"""Hyper-parameter search with the Trainer's own `hyperparameter_search` (optuna backend, the `search` extra): each
trial a short run of the training config, its trainer built as `detr-train` builds one
(`recipe.training.run.prepare_training` / `trainer_arguments`: same datasets, collator, metrics and callbacks), scored
by the recipe's COCO evaluation at each evaluation and at its end (objective eval_map, maximised) and pruned by
optuna's MedianPruner on those scores.

`detr-search [CONFIG.yaml] --trials N [--budget 40steps 80steps] [--output_dir D] [training flags ...]`
(arguments: `recipe/config/search_plan.py`). The space (`SearchSpace`), around the config's values: learning_rate,
weight_decay and backbone_lr_multiplier (the config's, else the family's) log-uniform in [x/3, 3x] (a 0 stays 0),
per_device_train_batch_size one of b/2, b, 2b; with use_ema the EMA's horizon 1 / (1 - ema_decay), log-uniform in
[h/3, 3h]; with --budget the schedule length (max_steps or num_train_epochs).

Resumable: the study lives in D/search.db (sqlite, study "detr-search"); a rerun counts the finished trials (complete
or pruned) and runs only those missing to reach --trials (a trial killed mid-run is marked failed and not counted).
Writes D/trial-<n>/trial.json (its params and evaluations), D/search.md / .json (one row per trial) and D/best.yaml:
the config's values and training flags with the best complete trial's applied, which `detr-train D/best.yaml` takes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path

from transformers import TrainerCallback

from recipe.config.command_arguments import SearchArguments
from recipe.config.search_plan import parse_schedule
from recipe.core.errors import ConfigError
from recipe.tools.search_report import applied, best_row, trial_rows, write_best_yaml, write_table

logger = logging.getLogger("recipe")

STUDY = "detr-search"
DB = "search.db"
SPREAD = 3.0  # each float searched in [x / SPREAD, x * SPREAD], log-uniform
SET_BY_SEARCH = ["--save_strategy", "no", "--push_to_hub", "false"]  # no checkpoints or pushes per trial
NO_VALIDATION = ("detr-search scores each trial on the validation set: give --val_img and --val_ann (or --dataset "
                 "with a validation split)")


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("detr-search needs optuna: pip install -e '.[search]'") from None
    return optuna


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The values a trial draws, around the config's (`around`). `suggest(trial)` -> the params optuna stores;
    `applied(params)` -> the fields they set."""

    learning_rate: float
    weight_decay: float
    batch_sizes: tuple[int, ...]
    backbone_lr_multiplier: float | None = None
    ema_horizon: float | None = None  # 1 / (1 - ema_decay): about the steps the EMA averages over
    schedule: tuple[str, tuple] | None = None  # ("max_steps", (40, 80)) or ("num_train_epochs", (2.0, 4.0))

    @classmethod
    def around(cls, train_args, model_args, model_type: str, schedule: tuple[str, list] | None) -> SearchSpace:
        from recipe.models.families import family_of

        multiplier = model_args.backbone_lr_multiplier
        multiplier = family_of(model_type).backbone_lr_multiplier if multiplier is None else multiplier
        b = train_args.per_device_train_batch_size
        return cls(train_args.learning_rate, train_args.weight_decay, tuple(sorted({max(1, b // 2), b, 2 * b})),
                   multiplier or None, 1 / (1 - train_args.ema_decay) if train_args.use_ema else None,
                   (schedule[0], tuple(schedule[1])) if schedule else None)

    def suggest(self, trial) -> dict:
        params = {"learning_rate": log_around(trial, "learning_rate", self.learning_rate)}
        if self.weight_decay > 0:
            params["weight_decay"] = log_around(trial, "weight_decay", self.weight_decay)
        params["per_device_train_batch_size"] = trial.suggest_categorical("per_device_train_batch_size",
                                                                          list(self.batch_sizes))
        if self.backbone_lr_multiplier:
            params["backbone_lr_multiplier"] = log_around(trial, "backbone_lr_multiplier", self.backbone_lr_multiplier)
        if self.ema_horizon:
            params["ema_horizon"] = trial.suggest_float("ema_horizon", max(1.0, self.ema_horizon / SPREAD),
                                                        self.ema_horizon * SPREAD, log=True)
        if self.schedule:
            params[self.schedule[0]] = trial.suggest_categorical(self.schedule[0], list(self.schedule[1]))
        return params

    def sample(self, trial) -> dict:
        """Trainer.hyperparameter_search's hp_space: the fields of the trial (DetectionTrainer routes
        backbone_lr_multiplier to its model_args)."""
        return applied(self.suggest(trial))


def log_around(trial, name: str, value: float) -> float:
    return trial.suggest_float(name, value / SPREAD, value * SPREAD, log=True)


# --- the search ---

def search(args: SearchArguments, training: list[str]) -> list[dict]:
    """Run the trials missing to reach args.trials, then write the table and best.yaml. -> the rows, by trial."""
    from recipe.config.load import parse_config

    optuna = require_optuna()
    root = Path(args.output_dir)
    config = parse_config([*training, "--output_dir", str(root), *SET_BY_SEARCH])
    if not (config.data.val_ann or config.data.dataset):
        raise ConfigError(NO_VALIDATION)
    schedule = parse_schedule(args.budget, max_steps=config.training.max_steps)
    root.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{root.resolve() / DB}"
    study = open_study(optuna, storage, {"training": training, "budget": args.budget})
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED))
    missing = args.trials - len(finished)
    logger.info("search %s: %d trial(s) finished, %d to run", root, len(finished), max(0, missing))
    if missing > 0:
        kwargs = {"storage": storage, "study_name": STUDY, "load_if_exists": True,
                  "pruner": optuna.pruners.MedianPruner(n_startup_trials=args.pruner_startup_trials),
                  # seeded, but not as the last run was: a rerun's trials must not repeat its draws
                  "sampler": optuna.samplers.TPESampler(seed=config.training.seed + len(study.trials))}
        run_trials(config, root, schedule, missing, kwargs)
    study = optuna.load_study(study_name=STUDY, storage=storage)
    rows = trial_rows(study)
    write_table(root, rows)
    best = best_row(rows)
    if best is None:
        logger.warning("no complete trial in %s: no best.yaml", root)
    else:
        write_best_yaml(root / "best.yaml", training, best)
    return rows


def open_study(optuna, storage: str, identity: dict):
    """The study in `storage` (made if new); a run killed mid-trial left it RUNNING: failed now, not counted."""
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="maximize", load_if_exists=True)
    known = study.user_attrs.get("search")
    if known is None:
        study.set_user_attr("search", identity)
    elif known != identity:
        raise ConfigError(f"{storage.removeprefix('sqlite:///')} holds a search of other training flags or --budget "
                          f"({' '.join(known['training'])}; budget {known['budget']}): rerun it with those, or give "
                          "another --output_dir")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return study


def run_trials(config, root: Path, schedule, n_trials: int, study_kwargs: dict) -> None:
    """`n_trials` more trials, each a DetectionTrainer run built as `run()` builds it, from a copy of the model
    that run() would start from."""
    from recipe.engine.callbacks import NoDuplicateFinalEvaluationCallback
    from recipe.engine.trainer import DetectionTrainer
    from recipe.training.run import prepare_runtime, prepare_training, trainer_arguments

    data_args, model_args, train_args, eval_args = config
    prepare_runtime(train_args)
    parts = prepare_training(data_args, model_args, train_args, eval_args)
    if parts.eval_dataset is None:
        raise ConfigError(NO_VALIDATION)
    space = SearchSpace.around(train_args, model_args, parts.model.config.model_type, schedule)
    logger.info("search space: %s", space)
    trials = TrialRuns(parts, data_args, train_args, space)
    trainer = DetectionTrainer(model_init=trials.model_init, **trainer_arguments(
        parts, model_args, train_args, eval_args, callbacks=[TrialEndCallback(root, trials)]))
    trainer.pop_callback(NoDuplicateFinalEvaluationCallback)  # a trial is scored at its end (TrialEndCallback)
    trials.trainer = trainer
    trainer.hyperparameter_search(hp_space=space.sample, compute_objective=trials.objective, n_trials=n_trials,
                                  direction="maximize", backend="optuna", hp_name=lambda t: f"trial-{t.number}",
                                  **study_kwargs)


class TrialRuns:
    """The per-trial hooks of `hyperparameter_search`: `model_init(trial)` (a fresh copy of the prepared model, the
    training dataset rebuilt when the trial's schedule changes the epochs its augmentation phases are placed in) and
    `objective(metrics)` (eval_map; the trial keeps each evaluation's eval_map, eval_map_50 and step)."""

    def __init__(self, parts, data_args, train_args, space: SearchSpace):
        self.parts, self.data_args, self.train_args, self.space = parts, data_args, train_args, space
        self.pristine = parts.model
        self.trainer, self.trial, self.schedule = None, None, self.epochs(train_args)

    def epochs(self, args) -> tuple[int, bool]:
        from recipe.training.data import training_epochs

        return training_epochs(args, len(self.parts.train.dataset)), bool(args.max_steps and args.max_steps > 0)

    def model_init(self, trial=None):
        self.trial = trial
        if trial is not None:
            args = copy.copy(self.train_args)
            for name, value in self.space.sample(trial).items():
                if hasattr(args, name):
                    setattr(args, name, value)
            if self.epochs(args) != self.schedule:
                from recipe.training.run import run_datasets

                self.trainer.train_dataset = run_datasets(self.data_args, self.parts.processor, self.parts.train, None,
                                                          args, self.parts.seeds)[0]
                self.schedule = self.epochs(args)
        return copy.deepcopy(self.pristine)

    def objective(self, metrics: dict) -> float:
        for key in ("eval_map", "eval_map_50"):
            self.trial.set_user_attr(key, float(metrics[key]))
        self.trial.set_user_attr("step", int(self.trainer.state.global_step))
        return float(metrics["eval_map"])


class TrialEndCallback(TrainerCallback):
    """Each trial is evaluated at its last step (the Trainer evaluates on its eval_strategy's steps only) and leaves
    trial-<n>/trial.json: its params, the fields they set and each evaluation."""

    def __init__(self, root: Path, trials: TrialRuns):
        self.root, self.trials, self.scored_at = root, trials, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.scored_at = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_evaluate = True

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:  # once, whatever eval_strategy "epoch" asks
            control.should_evaluate = self.scored_at != state.global_step

    def on_evaluate(self, args, state, control, **kwargs):
        self.scored_at = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        trial = self.trials.trial
        if trial is None or not state.trial_name:
            return
        folder = self.root / state.trial_name
        folder.mkdir(parents=True, exist_ok=True)
        evaluations = [{k: e[k] for k in ("step", "eval_map", "eval_map_50")} for e in state.log_history
                       if "eval_map" in e]
        (folder / "trial.json").write_text(json.dumps(
            {"trial": trial.number, "params": trial.params, "values": applied(trial.params), "steps": state.max_steps,
             "evaluations": evaluations}, indent=1))
