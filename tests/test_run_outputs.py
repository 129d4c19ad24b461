"""After training: the output folder keeps the run's history, the loss terms, the plots and a card showing them;
resuming picks the newest checkpoint; a new run never mixes into an old one."""

import importlib.util
import json

import pytest
import torch

from conftest import demo_args
from recipe.errors import ConfigError
from recipe.plots import PLOT_FILES
from recipe.train import prepare_output_dir, run
from recipe.trainer import LossTermAverager

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.fixture(scope="module")
def trained(demo_dir, tmp_path_factory):
    """A 2-step demo run with a log at every step and a final evaluation: (output folder, final metrics).
    It also reports to TensorBoard where that is installed (the test extra brings it), so one run serves all."""
    tmp = tmp_path_factory.mktemp("run")
    report = ["--report_to", "tensorboard"] if HAS_TENSORBOARD else []
    metrics = run(*demo_args(demo_dir, tmp, "--max_steps", "2", "--per_device_train_batch_size", "2", *report))
    return tmp / "out", metrics


def test_history_with_loss_terms_is_in_the_output_folder(trained):
    out, metrics = trained
    state = json.loads((out / "trainer_state.json").read_text())
    train_logs = [r for r in state["log_history"] if "loss" in r]
    assert [r["step"] for r in train_logs] == [1, 2]
    for record in train_logs:
        assert {"loss_ce", "loss_bbox", "loss_giou", "cardinality_error", "learning_rate"} <= set(record)
        assert not any(k.endswith(("_0", "_1")) for k in record)  # auxiliary decoder terms stay out of the log
    assert state["log_history"][-1]["eval_map"] == metrics["eval_map"]
    # The weighted total is what the recipe's coefficients make of the logged terms, give or take the aux terms.
    assert all(r["loss"] >= 2 * r["loss_ce"] + 5 * r["loss_bbox"] + 2 * r["loss_giou"] - 1e-4 for r in train_logs)
    config = json.loads((out / "config.json").read_text())
    assert config["category_ids"] == [1, 2, 3, 4, 5]
    assert config["supercategories"] == ["traffic"] * 5  # the demo file's, kept with the class list


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
def test_report_to_tensorboard_writes_the_loss_terms(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = trained
    (run_dir,) = out.glob("runs/*")  # one run; its final evaluation is logged after training into a second file
    assert list(run_dir.glob("events.out.tfevents.*"))
    logged = EventAccumulator(str(run_dir)).Reload()
    history = [r for r in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in r]
    for term in ("loss", "loss_ce", "loss_bbox", "loss_giou"):
        scalars = logged.Scalars(f"train/{term}")  # the Trainer's TensorBoard callback prefixes "train/"
        assert [s.step for s in scalars] == [1, 2], term
        # The same numbers as the run's history (TensorBoard stores float32).
        assert [s.value for s in scalars] == pytest.approx([r[term] for r in history], rel=1e-6), term
    assert "eval/map" in logged.Tags()["scalars"]


def test_plots_and_card_after_the_final_evaluation(trained):
    out, metrics = trained
    for name, file in PLOT_FILES.items():
        assert (out / "plots" / file).stat().st_size > 1000, name
        assert (out / "plots" / file).with_suffix(".json").is_file(), name
    per_class = json.loads((out / "plots" / "per_class_ap.json").read_text())
    saved = json.loads((out / "eval_per_class.json").read_text())
    assert dict(zip(per_class["classes"], per_class["ap"])) == saved  # same numbers as the evaluation, exactly
    curves = json.loads((out / "plots" / "training_curves.json").read_text())
    assert curves["train"]["step"] == [1, 2] and curves["eval"]["eval_map"] == [metrics["eval_map"]]
    card = (out / "README.md").read_text()
    for name, file in PLOT_FILES.items():
        assert f"![{name}](plots/{file})" in card


def test_evaluate_a_saved_model_writes_the_plots_of_training(trained, demo_dir, tmp_path):
    from recipe.evaluate import evaluate_checkpoint

    out, _ = trained
    val = demo_dir / "val"
    metrics = evaluate_checkpoint(str(out), str(val / "images"), str(val / "annotations.json"), num_workers=0,
                                  dataset_cache_dir=str(tmp_path / "cache"), plots=str(tmp_path / "p"))
    expected = set(PLOT_FILES) - {"training_curves"}  # no training log here
    assert {f.stem for f in (tmp_path / "p").iterdir()} == expected
    for name in expected:
        assert (tmp_path / "p" / PLOT_FILES[name]).stat().st_size > 1000, name
    per_class = json.loads((tmp_path / "p" / "per_class_ap.json").read_text())
    assert dict(zip(per_class["classes"], per_class["ap"])) == metrics["per_class"]
    # Same model, same images, same resize: the same figures' numbers as the run's final evaluation.
    assert per_class == json.loads((out / "plots" / "per_class_ap.json").read_text())
    grid = json.loads((tmp_path / "p" / "val_predictions.json").read_text())
    assert grid == json.loads((out / "plots" / "val_predictions.json").read_text())


def make_checkpoints(out, *steps):
    for s in steps:
        (out / f"checkpoint-{s}").mkdir(parents=True)


def test_resume_last_and_auto_pick_the_newest_checkpoint(demo_dir, tmp_path):
    _, _, args, _ = demo_args(demo_dir, tmp_path, "--resume_from_checkpoint", "last")
    with pytest.raises(ConfigError, match="no checkpoint-<step> folder in"):
        prepare_output_dir(args)
    _, _, args, _ = demo_args(demo_dir, tmp_path, "--resume_from_checkpoint", "auto")
    prepare_output_dir(args)
    assert args.resume_from_checkpoint is None  # auto without checkpoints: a fresh start
    make_checkpoints(tmp_path / "out", 3, 10, 9)
    (tmp_path / "out" / "checkpoint-99.tmp").mkdir()
    for how in ("last", "auto"):
        _, _, args, _ = demo_args(demo_dir, tmp_path, "--resume_from_checkpoint", how)
        prepare_output_dir(args)
        assert args.resume_from_checkpoint == str(tmp_path / "out" / "checkpoint-10")


def test_new_run_into_a_folder_with_checkpoints_is_refused_unless_overwriting(demo_dir, tmp_path):
    make_checkpoints(tmp_path / "out", 4)
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"already holds checkpoints \(newest: checkpoint-4\)"):
        prepare_output_dir(demo_args(demo_dir, tmp_path)[2])
    prepare_output_dir(demo_args(demo_dir, tmp_path, "--overwrite_output_dir", "true")[2])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]  # only checkpoints go


@pytest.mark.slow
def test_resumed_run_continues_from_the_newest_checkpoint(demo_dir, tmp_path):
    common = ("--per_device_train_batch_size", "2", "--save_strategy", "steps", "--save_steps", "1",
              "--val-ann", "", "--val-img", "")
    run(*demo_args(demo_dir, tmp_path, "--max_steps", "2", *common))
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    run(*demo_args(demo_dir, tmp_path, "--max_steps", "3", "--resume_from_checkpoint", "last", *common))
    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [r["step"] for r in state["log_history"] if "loss" in r] == [1, 2, 3]  # steps 1-2 from the checkpoint


def test_loss_term_averager_means_and_aux_terms():
    avg = LossTermAverager()
    assert avg.pop_means() == {}
    avg.add({"loss_ce": torch.tensor(1.0), "loss_ce_0": torch.tensor(9.0), "loss_vfl_dn_2": torch.tensor(9.0),
             "cardinality_error": torch.tensor(4.0)})
    avg.add({"loss_ce": torch.tensor(2.0), "cardinality_error": torch.tensor(2.0)})
    avg.add(None)  # an output without loss_dict is not counted
    assert avg.pop_means() == {"cardinality_error": 3.0, "loss_ce": 1.5}
    assert avg.pop_means() == {}
