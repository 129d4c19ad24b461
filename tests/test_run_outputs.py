"""After training: the output folder keeps the run's history, the loss terms, the plots and a card showing them;
resuming picks the newest checkpoint; a new run never mixes into an old one."""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForObjectDetection, TrainerCallback

from conftest import DEMO, ROOT, demo_args
from recipe.core.errors import ConfigError, ModelNotAvailable
from recipe.engine.trainer import LossTermAverager
from recipe.evaluation.plots import PLOT_FILES
from recipe.training.run import run
from recipe.training.run_folder import prepare_output_dir

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.fixture
def trained(trained_demo):
    """conftest's 2-step demo run (a log at every step, a final evaluation, TensorBoard where installed)."""
    return trained_demo


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
    assert "Augmentation: deformable." in card  # the demo config's (the default preset)
    for name, file in PLOT_FILES.items():
        assert f"![{name}](plots/{file})" in card


def test_evaluate_a_saved_model_writes_the_plots_of_training(trained, demo_dir, tmp_path):
    from recipe.evaluation.evaluate import evaluate_checkpoint

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


def make_checkpoints(out, *steps, complete=True):
    for s in steps:
        (out / f"checkpoint-{s}").mkdir(parents=True)
        if complete:  # the Trainer writes trainer_state.json last
            (out / f"checkpoint-{s}" / "trainer_state.json").write_text(json.dumps({"global_step": s}))


def test_resume_last_and_auto_pick_the_newest_complete_checkpoint(demo_dir, tmp_path):
    _, _, args, _ = demo_args(demo_dir, tmp_path, "--resume_from_checkpoint", "last")
    with pytest.raises(ConfigError, match="no complete checkpoint-<step> folder in"):
        prepare_output_dir(args)
    _, _, args, _ = demo_args(demo_dir, tmp_path, "--resume_from_checkpoint", "auto")
    prepare_output_dir(args)
    assert args.resume_from_checkpoint is None  # auto without checkpoints: a fresh start
    make_checkpoints(tmp_path / "out", 3, 10, 9)
    (tmp_path / "out" / "checkpoint-99.tmp").mkdir()
    make_checkpoints(tmp_path / "out", 11, complete=False)  # a run killed while saving it
    (tmp_path / "out" / "checkpoint-12").mkdir()
    (tmp_path / "out" / "checkpoint-12" / "trainer_state.json").write_text('{"global_st')  # cut off mid-write
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


class Snapshots(TrainerCallback):
    """Every parameter and buffer of the model when training (re)starts (after the Trainer loaded the checkpoint
    it resumes from) and when it ends (after load_best_model_at_end)."""

    def __init__(self):
        self.tensors = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.tensors["begin"] = _tensors(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.tensors["end"] = _tensors(model)


def _tensors(model) -> dict:
    return {n: t.detach().clone() for n, t in [*model.named_parameters(), *model.named_buffers()]}


def assert_same_tensors(tensors: dict, folder) -> None:
    """`tensors` equal, one by one, the model saved in `folder` as transformers itself loads it (no key left out)."""
    saved, info = AutoModelForObjectDetection.from_pretrained(folder, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    expected = _tensors(saved)
    assert tensors.keys() == expected.keys()
    assert [n for n, t in expected.items() if not torch.equal(tensors[n], t)] == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_resumed_run_restores_every_tensor_and_continues_from_the_newest_checkpoint(demo_dir, tmp_path):
    common = ("--per_device_train_batch_size", "2", "--save_strategy", "steps", "--save_steps", "1",
              "--save_total_limit", "3", "--eval_strategy", "steps", "--eval_steps", "1",
              "--load_best_model_at_end", "true",
              # "greater is better": the higher-loss checkpoint-1 is the best, so loading it changes the weights
              "--metric_for_best_model", "eval_loss", "--greater_is_better", "true")
    first = Snapshots()
    run(*demo_args(demo_dir, tmp_path, "--max_steps", "2", *common), callbacks=[first])
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    best = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["best_model_checkpoint"]
    assert best == str(out / "checkpoint-1")
    assert_same_tensors(first.tensors["end"], best)  # load_best_model_at_end
    resumed = Snapshots()
    run(*demo_args(demo_dir, tmp_path, "--max_steps", "3", "--resume_from_checkpoint", "last", *common),
        callbacks=[resumed])
    assert_same_tensors(resumed.tensors["begin"], out / "checkpoint-2")
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [r["step"] for r in state["log_history"] if "loss" in r] == [1, 2, 3]  # steps 1-2 from the checkpoint


def train_command(demo_dir, tmp_path, out, *extra) -> list[str]:
    """scripts/train.py on 6 demo images at 128 px, seed 7: 3 steps an epoch, 5 steps, a checkpoint every step."""
    return [sys.executable, str(ROOT / "scripts" / "train.py"), DEMO, "--train-img", f"{demo_dir}/train/images",
            "--train-ann", f"{demo_dir}/train/annotations.json", "--val-img", f"{demo_dir}/val/images",
            "--val-ann", f"{demo_dir}/val/annotations.json", "--subset", "6", "--output_dir", str(out),
            "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0", "--shortest_edges", "128",
            "--eval_size", "128", "--longest_edge", "160", "--per_device_train_batch_size", "2", "--max_steps", "5",
            "--warmup_steps", "0", "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1",
            "--seed", "7", *extra]


def step_logs(out) -> list[dict]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [{k: v for k, v in r.items() if isinstance(v, float)} | {"step": r["step"]} for r in history if "loss" in r]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("features", [
    # Without EMA or a final phase: the same proof on less state (the EMA case restores all of it and more).
    pytest.param((), marks=pytest.mark.extended, id="plain"),
    pytest.param(("--use_ema", "true", "--ema_warmup_steps", "2", "--no_aug_epochs", "1"), id="ema_and_no_aug_phase"),
    # DEIM's preset: epoch 0 of 2 has Mosaic and MixUp (Phases(0, 1, 2)), whose partner images come from each
    # image's own stream: the killed run is resumed inside it.
    pytest.param(("--augmentation", "deim", "--color_jitter_prob", "0.5", "--resize", "square"),
                 id="deim_mosaic_mixup"),
    # Repeat-factor sampling at 0.9: the 6 images' factors 1.04-2.32 give 8 images (4 steps) an epoch, drawn anew
    # each epoch from (seed, epoch): killed in epoch 0, the resumed run draws epoch 0's list again and then epoch 1's.
    pytest.param(("--repeat_factor_threshold", "0.9"), id="repeat_factor_sampling")])
def test_a_run_killed_and_resumed_ends_as_the_uninterrupted_run(demo_dir, tmp_path, features):
    """SIGKILL once checkpoint-2 is written (mid-epoch: the dataloader, RNG and augmentation state must all come
    back), `--resume_from_checkpoint last`: the same losses at every step and the same final metrics. With EMA
    (its state in each checkpoint) and a final epoch without augmentation (5 steps = 2 epochs of 3 steps)."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(train_command(demo_dir, tmp_path, whole, *features), check=True, capture_output=True)
    if "--use_ema" in features:
        assert (whole / "checkpoint-5" / "ema.safetensors").is_file()  # save_total_limit 2 keeps 4 and 5
    proc = subprocess.Popen(train_command(demo_dir, tmp_path, killed, *features), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while not (killed / "checkpoint-2" / "trainer_state.json").is_file():
            assert proc.poll() is None, "the run ended before checkpoint-2 was written"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed / "model.safetensors").exists()
    resumed = subprocess.run(train_command(demo_dir, tmp_path, killed, *features, "--resume_from_checkpoint",
                                           "last"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    expected, got = step_logs(whole), step_logs(killed)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5]
    for want, have in zip(expected, got):
        assert have.keys() == want.keys() and {"loss", "loss_ce", "grad_norm"} <= want.keys()
        assert all(have[k] == pytest.approx(want[k], rel=0, abs=1e-6) for k in want), (want, have)
    metrics = [json.loads((out / "eval_results.json").read_text()) for out in (whole, killed)]
    scores = [{k: v for k, v in m.items() if not k.endswith(("runtime", "per_second"))} for m in metrics]
    assert "eval_loss" in scores[0] and scores[1].keys() == scores[0].keys()
    assert all(scores[1][k] == pytest.approx(v, rel=0, abs=1e-6) for k, v in scores[0].items()), scores
    saved = [load_file(out / "model.safetensors") for out in (whole, killed)]
    assert saved[0].keys() == saved[1].keys() and all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])


# 6 images, batch 1: the 5 steps are all in the first epoch; no checkpoint strategy; EMA on.
SIGNAL_RUN = ("--per_device_train_batch_size", "1", "--save_strategy", "no", "--use_ema", "true",
              "--ema_warmup_steps", "2")


@pytest.fixture(scope="module")
def uninterrupted_signal_run(demo_dir, tmp_path_factory):
    """The reference both signal tests resume towards: SIGNAL_RUN trained to its end, uninterrupted (folder)."""
    tmp = tmp_path_factory.mktemp("signal-reference")
    subprocess.run(train_command(demo_dir, tmp, tmp / "whole", *SIGNAL_RUN), check=True, capture_output=True)
    return tmp / "whole"


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_a_checkpoint_and_the_resumed_run_ends_as_the_uninterrupted_one(
        demo_dir, tmp_path, sig, uninterrupted_signal_run):
    """Preemption (SIGTERM) or Ctrl-C (SIGINT) mid-epoch, with no checkpoint strategy at all: the step finishes, a
    complete checkpoint is saved, one line says how to resume, the exit code is 128 + the signal; resuming ends
    with the uninterrupted run's losses, metrics and weights. With EMA on (its state is in the checkpoint)."""
    whole, stopped, extra = uninterrupted_signal_run, tmp_path / "stopped", SIGNAL_RUN
    proc = subprocess.Popen(train_command(demo_dir, tmp_path, stopped, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in proc.stdout:  # the Trainer prints each step's logs as a dict
        lines.append(line)
        if "'loss'" in line:
            proc.send_signal(sig)
            break
    lines += proc.stdout.readlines()
    proc.wait()
    output = "".join(lines)
    assert proc.returncode == 128 + sig, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert re.fullmatch(r"interrupted at step \d \(checkpoint saved in .*\); resume with --resume_from_checkpoint "
                        r"last", last), last
    step = int(last.split()[3])
    assert 1 <= step < 5 and "Traceback" not in output
    assert (stopped / f"checkpoint-{step}" / "ema.safetensors").is_file()
    assert not (stopped / "model.safetensors").exists()  # nothing pretends to be a finished run
    resumed = subprocess.run(train_command(demo_dir, tmp_path, stopped, *extra, "--resume_from_checkpoint", "last"),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = step_logs(whole), step_logs(stopped)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5]
    for want, have in zip(expected, got):
        assert all(have[k] == pytest.approx(want[k], rel=0, abs=1e-6) for k in want), (want, have)
    metrics = [json.loads((out / "eval_results.json").read_text()) for out in (whole, stopped)]
    assert all(metrics[1][k] == pytest.approx(v, rel=0, abs=1e-6) for k, v in metrics[0].items()
               if not k.endswith(("runtime", "per_second")))
    saved = [load_file(out / "model.safetensors") for out in (whole, stopped)]
    assert saved[0].keys() == saved[1].keys() and all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])


def test_a_checkpoint_that_does_not_match_the_model_is_an_error(demo_dir, tmp_path):
    """A key the model does not have (or lacks) would leave weights at random: one line, never a warning."""
    from safetensors.torch import load_file, save_file

    from recipe.models.checkpoint_weights import load_checkpoint_weights
    from recipe.training.run import build_model

    data, model_args, _, _ = demo_args(demo_dir, tmp_path)
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(["car", "truck", "pedestrian", "light", "sign"])]
    model, _ = build_model(model_args, data, categories)
    model.save_pretrained(tmp_path / "ckpt")
    load_checkpoint_weights(model, str(tmp_path / "ckpt"))  # its own folder: every key matches
    with pytest.raises(ModelNotAvailable, match=r"nowhere: no model weights there \(model.safetensors\)"):
        load_checkpoint_weights(model, str(tmp_path / "nowhere"))
    weights = load_file(tmp_path / "ckpt" / "model.safetensors")
    name = next(k for k in weights if k.endswith("fc1.weight"))
    save_file({**{k: v for k, v in weights.items() if k != name}, "model.extra.weight": weights[name]},
              tmp_path / "ckpt" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelNotAvailable, match=r"ckpt: the checkpoint does not match the model \(missing_keys: 1 "
                                                r"\(e\.g\. \['model\..*fc1\.weight'\]\); unexpected_keys: 1"):
        load_checkpoint_weights(model, str(tmp_path / "ckpt"))


def test_loss_term_averager_means_and_aux_terms():
    avg = LossTermAverager()
    assert avg.pop_means() == {}
    avg.add({"loss_ce": torch.tensor(1.0), "loss_ce_0": torch.tensor(9.0), "loss_vfl_dn_2": torch.tensor(9.0),
             "cardinality_error": torch.tensor(4.0)})
    avg.add({"loss_ce": torch.tensor(2.0), "cardinality_error": torch.tensor(2.0)})
    avg.add(None)  # an output without loss_dict is not counted
    assert avg.pop_means() == {"cardinality_error": 3.0, "loss_ce": 1.5}
    assert avg.pop_means() == {}
