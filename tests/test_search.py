"""detr-search (recipe/tools/search.py): its flags apart from training's, the space around the config's values, a
trial's values reaching the trainer (EMA and backbone lr included), the table and best.yaml, its one-line errors, and
a search on the demo resumed with the one trial missing."""

from __future__ import annotations

import copy
import json
import sys

import optuna
import pytest
import yaml

from conftest import DEMO
from recipe.config.load import parse_config
from recipe.config.search_plan import parse_schedule, parse_search
from recipe.core.errors import ConfigError
from recipe.tools.search import SearchSpace, search
from recipe.tools.search_report import applied, write_best_yaml, write_table


def test_searchs_own_flags_are_split_from_the_training_flags():
    args, training = parse_search([DEMO, "--trials", "4", "--max_steps", "5", "--budget", "20steps", "40steps",
                                   "--output_dir=o", "--seed", "1", "--train-img", "x"])
    assert (args.trials, args.budget, args.output_dir, args.pruner_startup_trials) == (4, ["20steps", "40steps"],
                                                                                       "o", 3)
    assert training == [DEMO, "--max_steps", "5", "--seed", "1", "--train-img", "x"]
    assert parse_search(["--trials", "1"])[1] == []


def test_the_budget_is_steps_or_epochs_bare_numbers_in_the_configs_unit():
    assert parse_schedule(["40steps", "20STEPS", "40"], max_steps=10) == ("max_steps", [20, 40])
    assert parse_schedule(["2", "4.5epochs"], max_steps=-1) == ("num_train_epochs", [2.0, 4.5])
    assert parse_schedule(None, max_steps=-1) is None
    for bad, message in ((["20steps", "2epochs"], "all in steps or all in epochs"), (["2.5steps"], "whole numbers"),
                         (["20 minutes"], "40steps or 2epochs"), (["0steps"], "40steps or 2epochs")):
        with pytest.raises(ConfigError, match=message):
            parse_schedule(bad, max_steps=-1)


@pytest.mark.parametrize(("argv", "message"), [
    (["--trials", "0"], r"trials must be in \[1, inf\), got 0"),
    ([DEMO, "--max_steps", "5"], "trials is required"),
    (["--trials", "2", "--pruner_startup_trials", "-1"], "pruner_startup_trials"),
])
def test_bad_search_flags_are_one_line(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_search(argv)


def test_nothing_to_score_and_no_optuna_are_one_line_errors_before_anything_runs(tmp_path, monkeypatch):
    args, training = parse_search([DEMO, "--trials", "2", "--output_dir", str(tmp_path / "s"), "--val_ann", "",
                                   "--val_img", ""])
    with pytest.raises(ConfigError, match="scores each trial on the validation set"):
        search(args, training)
    assert not (tmp_path / "s").exists()
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"needs optuna: pip install -e '\.\[search\]'"):
        search(*parse_search([DEMO, "--trials", "2", "--output_dir", str(tmp_path / "s")]))


class RecordingTrial:
    """A trial that answers each suggestion with its lowest value, and records what was asked."""

    def __init__(self):
        self.asked = {}

    def suggest_float(self, name, low, high, *, log=False):
        self.asked[name] = (low, high, log)
        return low

    def suggest_categorical(self, name, choices):
        self.asked[name] = list(choices)
        return choices[0]


def demo_config(*flags):
    return parse_config([DEMO, "--output_dir", "unused", *flags])


def test_the_space_lies_around_the_configs_values():
    config = demo_config("--use_ema", "true", "--ema_decay", "0.999", "--per_device_train_batch_size", "8")
    space = SearchSpace.around(config.training, config.model, "deformable_detr", ("max_steps", [20, 40]))
    trial = RecordingTrial()
    values = space.sample(trial)
    expected = {"learning_rate": (1e-3 / 3, 3e-3, True), "weight_decay": (1e-4 / 3, 3e-4, True),
                "per_device_train_batch_size": [4, 8, 16],
                "backbone_lr_multiplier": (0.1 / 3, 0.3, True),  # the family's (the config sets none)
                "ema_horizon": (1000 / 3, 3000, True), "max_steps": [20, 40]}
    assert list(trial.asked) == list(expected)
    for name, asked in trial.asked.items():
        assert asked == pytest.approx(expected[name]), name
    assert values["ema_decay"] == pytest.approx(1 - 3 / 1000) and "ema_horizon" not in values
    # optuna's own FixedTrial: the params of a stored trial give the fields they set
    params = {"learning_rate": 2e-3, "weight_decay": 1e-4, "per_device_train_batch_size": 16,
              "backbone_lr_multiplier": 0.2, "ema_horizon": 2000.0, "max_steps": 40}
    fixed = space.sample(optuna.trial.FixedTrial(params))
    assert fixed == {k: v for k, v in params.items() if k != "ema_horizon"} | {"ema_decay": 1 - 1 / 2000}
    # no EMA, a weight decay and backbone multiplier of 0 are kept (no log range around 0), epochs drop max_steps
    config = demo_config("--weight_decay", "0", "--backbone_lr_multiplier", "0", "--per_device_train_batch_size", "1",
                         "--max_steps", "30")
    space = SearchSpace.around(config.training, config.model, "deformable_detr", ("num_train_epochs", [2.0, 4.0]))
    trial = RecordingTrial()
    assert space.sample(trial) == {"learning_rate": 1e-3 / 3, "per_device_train_batch_size": 1,
                                   "num_train_epochs": 2.0, "max_steps": -1}
    assert trial.asked["per_device_train_batch_size"] == [1, 2]


def test_a_trials_ema_decay_and_backbone_lr_reach_the_trainer(tmp_path):
    """Trainer.hyperparameter_search sets a trial's TrainingArguments fields (`_hp_search_setup`) after model_init;
    DetectionTrainer routes backbone_lr_multiplier to model_args (create_optimizer reads it there) and starts its EMA
    again on the trial's model with the trial's decay (the one of __init__ had the first model and decay)."""
    import torch
    from transformers.trainer_utils import HPSearchBackend

    from recipe.engine.callbacks import EmaUpdateCallback
    from recipe.engine.trainer import DetectionTrainer
    from recipe.models.loading import load_model_and_processor

    config = parse_config([DEMO, "--use_ema", "true", "--ema_decay", "0.99", "--output_dir", str(tmp_path),
                           "--eval_strategy", "no", "--report_to", "none", "--use_cpu", "true"])
    model, _ = load_model_and_processor(config.model, {0: "a", 1: "b"})
    trainer = DetectionTrainer(model_init=lambda: copy.deepcopy(model), args=config.training, model_args=config.model)
    assert trainer.ema.decay == 0.99
    space = SearchSpace.around(config.training, config.model, "deformable_detr", None)
    params = {"learning_rate": 2e-3, "weight_decay": 2e-4, "per_device_train_batch_size": 4,
              "backbone_lr_multiplier": 0.25, "ema_horizon": 50.0}
    trainer.hp_search_backend, trainer.hp_space = HPSearchBackend.OPTUNA, space.sample
    trainer.model = trial_model = copy.deepcopy(model)  # what train() does before _hp_search_setup
    first = next(n for n, p in trial_model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        trial_model.get_parameter(first).add_(1.0)  # tells the trial's model from the first one
    trainer._hp_search_setup(optuna.trial.FixedTrial(params))
    assert (trainer.args.learning_rate, trainer.args.weight_decay, trainer.args.per_device_train_batch_size) == (
        2e-3, 2e-4, 4)
    assert trainer.model_args.backbone_lr_multiplier == 0.25 and not hasattr(trainer.args, "backbone_lr_multiplier")
    assert trainer.args.ema_decay == trainer.ema.decay == 1 - 1 / 50
    updates = [c for c in trainer.callback_handler.callbacks if isinstance(c, EmaUpdateCallback)]
    assert len(updates) == 1 and updates[0].ema is trainer.ema
    assert trainer.ema.shadow[first].equal(trial_model.get_parameter(first).detach())  # the trial's model
    lrs = {g.get("name"): g["lr"] for g in trainer.create_optimizer().param_groups}
    assert lrs["backbone"] == pytest.approx(2e-3 * 0.25)


def test_a_trial_killed_mid_run_is_failed_and_another_searchs_flags_are_refused(tmp_path):
    from recipe.tools.search import open_study

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    identity = {"training": [DEMO, "--max_steps", "5"], "budget": None}
    study = open_study(optuna, storage, identity)
    study.tell(study.ask(), 0.5)
    study.ask()  # still RUNNING when its process was killed
    study = open_study(optuna, storage, identity)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    with pytest.raises(ConfigError, match=r"search\.db holds a search of other training flags.*--max_steps 5"):
        open_study(optuna, storage, {**identity, "budget": ["10steps"]})


def test_a_trials_schedule_rebuilds_the_training_dataset_only_when_its_epochs_change(monkeypatch):
    """The augmentation's phases are placed in the run's epochs (build_datasets), so a trial of another length gets
    its own training dataset; the model is a fresh copy each trial."""
    import types

    import torch

    import recipe.training.run
    from recipe.tools.search import TrialRuns

    built = []
    monkeypatch.setattr(recipe.training.run, "run_datasets",
                        lambda data, processor, train, val, args, seeds: built.append(args.num_train_epochs) or
                        (f"dataset of {args.num_train_epochs} epochs", None))
    config = demo_config("--num_train_epochs", "2", "--per_device_train_batch_size", "4")
    space = SearchSpace.around(config.training, config.model, "deformable_detr", ("num_train_epochs", [2.0, 4.0]))
    parts = types.SimpleNamespace(model=torch.nn.Linear(2, 2), train=types.SimpleNamespace(dataset=range(24)),
                                  processor=None, seeds=None)
    trials = TrialRuns(parts, config.data, config.training, space)
    trials.trainer = types.SimpleNamespace(train_dataset="the run's dataset")
    params = {"learning_rate": 1e-3, "weight_decay": 1e-4, "per_device_train_batch_size": 4,
              "backbone_lr_multiplier": 0.1}
    for epochs in (2.0, 4.0, 4.0, 2.0):
        model = trials.model_init(optuna.trial.FixedTrial({**params, "num_train_epochs": epochs}))
        assert model is not parts.model and model.weight.equal(parts.model.weight)
    assert built == [4.0, 2.0] and trials.trainer.train_dataset == "dataset of 2.0 epochs"
    assert config.training.num_train_epochs == 2  # the trial's values go to a copy


def test_the_table_and_best_yaml_a_training_config_with_the_best_values(tmp_path):
    rows = [{"trial": 0, "state": "complete", "learning_rate": 1e-3, "ema_decay": 0.999, "num_train_epochs": 2.0,
             "eval_map": 0.25, "eval_map_50": 0.5, "step": 40},
            {"trial": 1, "state": "pruned", "learning_rate": 2e-3, "ema_decay": 0.99, "num_train_epochs": 4.0,
             "eval_map": 0.3, "eval_map_50": 0.6, "step": 10},
            {"trial": 2, "state": "complete", "learning_rate": 5e-4, "ema_decay": 0.995, "num_train_epochs": 4.0,
             "eval_map": 0.125, "eval_map_50": 0.2, "step": 80},
            {"trial": 3, "state": "fail", "learning_rate": 4e-4, "ema_decay": 0.9, "num_train_epochs": 2.0,
             "eval_map": None, "eval_map_50": None, "step": None}]
    write_table(tmp_path, rows)
    assert json.loads((tmp_path / "search.json").read_text()) == rows
    table = (tmp_path / "search.md").read_text()
    assert table.splitlines()[0] == ("| trial | state | learning_rate | ema_decay | num_train_epochs | eval_map | "
                                     "eval_map_50 | step |")
    assert "| 1 | pruned | 0.002 | 0.99 | 4 | 0.3000 | 0.6000 | 10 |" in table
    assert "| 3 | fail | 0.0004 | 0.9 | 2 | - | - | - |" in table
    assert "best: trial 0 (eval_map 0.2500)" in table  # the pruned trial's higher figure came from a shorter run
    training = [DEMO, "--max_steps", "7", "--eval_strategy", "steps", "--batch-size", "2", "--report_to", "none",
                "--model_config", "d_fine", "--shortest_edges", "128", "160"]
    write_best_yaml(tmp_path / "best.yaml", training, rows[0])
    written = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert written["output_dir"] == "outputs/demo" and written["model_config"] == {"model_type": "d_fine"}
    best = parse_config([str(tmp_path / "best.yaml")])
    given = parse_config(training)
    assert (best.training.learning_rate, best.training.ema_decay, best.training.num_train_epochs,
            best.training.max_steps) == (1e-3, 0.999, 2.0, -1)  # an epoch budget: the flag's max_steps must not win
    for name in ("eval_strategy", "per_device_train_batch_size", "per_device_eval_batch_size", "report_to",
                 "lr_scheduler_type", "warmup_steps"):
        assert getattr(best.training, name) == getattr(given.training, name), name
    assert best.model.model_config == given.model.model_config and best.data.shortest_edges == [128, 160]
    assert applied({"ema_horizon": 100.0, "max_steps": 5}) == {"ema_decay": 0.99, "max_steps": 5}


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.timeout(600)
def test_a_search_on_the_demo_scores_each_trial_by_its_evaluation_and_resumes(demo_dir, tmp_path, monkeypatch,
                                                                               capsys):
    """Three trials on the demo (EMA on, steps budget), then --trials 4 runs the one missing; each row's eval_map is
    what the trial's last evaluation returned, and best.yaml is a training config holding the best trial's values."""
    import time

    from recipe.cli.main import search_main
    from recipe.engine.trainer import DetectionTrainer

    reported = {}
    evaluate = DetectionTrainer.evaluate

    def recording(self, *args, **kwargs):
        metrics = evaluate(self, *args, **kwargs)
        reported.setdefault(self.state.trial_name, []).append(
            (self.state.global_step, metrics["eval_map"], metrics["eval_map_50"]))
        return metrics

    monkeypatch.setattr(DetectionTrainer, "evaluate", recording)
    out = tmp_path / "search"
    argv = [DEMO, "--train-img", f"{demo_dir}/train/images", "--train-ann", f"{demo_dir}/train/annotations.json",
            "--val-img", f"{demo_dir}/val/images", "--val-ann", f"{demo_dir}/val/annotations.json",
            "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0", "--shortest_edges", "128",
            "--eval_size", "128", "--longest_edge", "160", "--per_device_train_batch_size", "1", "--max_steps", "20",
            "--warmup_steps", "2", "--eval_strategy", "steps", "--eval_steps", "8", "--logging_steps", "10",
            "--report_to", "none", "--use_ema", "true", "--ema_decay", "0.9", "--ema_warmup_steps", "2",
            "--output_dir", str(out), "--budget", "12", "20"]
    start = time.perf_counter()
    search_main([*argv, "--trials", "3"])
    first = json.loads((out / "search.json").read_text())
    assert [r["trial"] for r in first] == [0, 1, 2] and sorted(reported) == ["trial-0", "trial-1", "trial-2"]
    reported_first = dict(reported)
    reported.clear()
    search_main([*argv, "--trials", "4"])  # one missing: only trial 3 runs
    seconds = time.perf_counter() - start
    rows = json.loads((out / "search.json").read_text())
    assert list(reported) == ["trial-3"] and rows[:3] == first and [r["trial"] for r in rows] == [0, 1, 2, 3]
    reported.update(reported_first)
    for row in rows:
        assert row["state"] in ("complete", "pruned")
        assert set(row) == {"trial", "state", "learning_rate", "weight_decay", "per_device_train_batch_size",
                            "backbone_lr_multiplier", "ema_decay", "max_steps", "eval_map", "eval_map_50", "step"}
        assert reported[f"trial-{row['trial']}"][-1] == (row["step"], row["eval_map"], row["eval_map_50"])
        trial = json.loads((out / f"trial-{row['trial']}" / "trial.json").read_text())
        assert trial["values"]["ema_decay"] == row["ema_decay"] and row["per_device_train_batch_size"] in (1, 2)
        if row["state"] == "complete":  # scored at its end too, whatever eval_steps says
            assert [e["step"] for e in trial["evaluations"]] == [*range(8, row["max_steps"], 8), row["max_steps"]] == [
                step for step, *_ in reported[f"trial-{row['trial']}"]]
    assert "| trial | state | learning_rate |" in capsys.readouterr().out
    best = max((r for r in rows if r["state"] == "complete"), key=lambda r: r["eval_map"])
    config = parse_config([str(out / "best.yaml")])  # what detr-train parses
    assert (config.training.learning_rate, config.training.weight_decay, config.training.per_device_train_batch_size,
            config.training.ema_decay, config.training.max_steps, config.model.backbone_lr_multiplier) == tuple(
        best[k] for k in ("learning_rate", "weight_decay", "per_device_train_batch_size", "ema_decay", "max_steps",
                          "backbone_lr_multiplier"))
    assert config.training.use_ema and config.data.val_ann == f"{demo_dir}/val/annotations.json"
    print(f"search: {seconds:.0f} s; " + "; ".join(
        f"trial {r['trial']} {r['state']}: lr {r['learning_rate']:.3g} batch {r['per_device_train_batch_size']} "
        f"steps {r['max_steps']} ema_decay {r['ema_decay']:.3f} -> eval_map {r['eval_map']:.4f}" for r in rows))
