"""EMA of the weights: the originals' decay formula by hand, swap-in and restore, and a run that evaluates and saves
the averaged weights (the resume test is in test_run_outputs.py)."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForObjectDetection, TrainerCallback

from conftest import demo_args
from recipe.core.errors import ConfigError
from recipe.engine.ema import ModelEma
from recipe.evaluation.evaluate import evaluate_checkpoint
from recipe.training.run import run


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.norm = torch.nn.BatchNorm1d(1)  # running stats (float buffers) and num_batches_tracked (int)


def test_decay_follows_the_rt_detr_formula():
    ema = ModelEma(Tiny(), decay=0.9999, warmup_steps=2000)
    assert ema.current_decay() == 0.0  # the first update copies the weights
    ema.updates = 2000
    assert ema.current_decay() == pytest.approx(0.9999 * (1 - math.exp(-1)), abs=1e-12)
    assert ModelEma(Tiny(), decay=0.5, warmup_steps=0).current_decay() == 0.5
    with pytest.raises(ConfigError, match="ema_decay must be in"):
        ModelEma(Tiny(), decay=1.0, warmup_steps=1)


@torch.no_grad()
def test_updates_by_hand_and_swap_in_restores_the_trained_weights():
    model = Tiny()
    ema = ModelEma(model, decay=0.5, warmup_steps=0)  # constant decay 0.5: shadow = (shadow + value) / 2
    model.linear.weight.copy_(torch.tensor([[1.0, 2.0]]))
    start = ema.shadow["linear.weight"].clone()
    ema.update(model)
    assert torch.allclose(ema.shadow["linear.weight"], (start + torch.tensor([[1.0, 2.0]])) / 2)
    model.linear.weight.copy_(torch.tensor([[3.0, 6.0]]))
    model.norm.num_batches_tracked.fill_(7)
    ema.update(model)
    want = ((start + torch.tensor([[1.0, 2.0]])) / 2 + torch.tensor([[3.0, 6.0]])) / 2
    assert torch.allclose(ema.shadow["linear.weight"], want)
    assert int(ema.shadow["norm.num_batches_tracked"]) == 7 and ema.updates == 2
    with ema.applied(model):
        assert torch.equal(model.linear.weight, ema.shadow["linear.weight"])
    assert torch.equal(model.linear.weight, torch.tensor([[3.0, 6.0]]))


def test_state_round_trips_and_a_foreign_file_is_an_error(tmp_path):
    model = Tiny()
    ema = ModelEma(model, decay=0.9, warmup_steps=5)
    for _ in range(3):
        with torch.no_grad():
            model.linear.weight.add_(1.0)
        ema.update(model)
    ema.save(str(tmp_path))
    again = ModelEma(Tiny(), decay=0.9, warmup_steps=5)
    again.load(str(tmp_path))
    assert again.updates == 3 and all(torch.equal(again.shadow[k], ema.shadow[k]) for k in ema.shadow)
    with pytest.raises(ConfigError, match="no ema.safetensors in this checkpoint"):
        again.load(str(tmp_path / "elsewhere"))
    other = ModelEma(torch.nn.Linear(2, 1), decay=0.9, warmup_steps=5)
    with pytest.raises(ConfigError, match="EMA keys do not match the model"):
        other.load(str(tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_run_with_ema_evaluates_and_saves_the_averaged_weights(demo_dir, tmp_path, caplog):
    """The final metrics are those of the saved (EMA) folder, which differs from the trained weights."""
    import logging

    captured = {}

    class KeepTrainer(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            captured["trained"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    with caplog.at_level(logging.WARNING, logger="recipe"):
        metrics = run(*demo_args(demo_dir, tmp_path, "--max_steps", "4", "--per_device_train_batch_size", "2",
                                 "--use_ema", "true", "--ema_decay", "0.9", "--ema_warmup_steps", "1"),
                      callbacks=[KeepTrainer()])
    # 4 steps are far too short for decay 0.9: the run says so once, at its start
    assert [r.getMessage()[:60] for r in caplog.records if "EMA decay" in r.getMessage()] == [
        "EMA decay 0.9 averages over about 10 steps: 67% of the final"]  # 0.9(1 - e^-2) x 0.9(1 - e^-3)
    out = tmp_path / "out"
    saved = load_file(out / "model.safetensors")
    trained = captured["trained"]
    differs = [k for k in saved if k in trained and saved[k].is_floating_point() and not torch.equal(saved[k],
                                                                                                     trained[k])]
    assert differs, "the saved weights are the trained ones, not their average"
    card = (out / "README.md").read_text()
    assert "exponential moving average (decay 0.9, warm-up 1 steps, 4 updates)" in card
    # Evaluating the saved folder gives the run's final numbers: the EMA weights are what was scored.
    again = evaluate_checkpoint(str(out), f"{demo_dir}/val/images", f"{demo_dir}/val/annotations.json",
                                num_workers=0, dataset_cache_dir=str(tmp_path / "cache"))
    assert again["map"] == pytest.approx(metrics["eval_map"], abs=1e-9)
    AutoModelForObjectDetection.from_pretrained(out)  # loads without missing or unexpected keys
    assert json.loads((out / "config.json").read_text())["model_type"] == "deformable_detr"


def test_early_stopping_without_a_validation_set_is_one_line(demo_dir, tmp_path):
    with pytest.raises(ConfigError, match="^early_stopping_patience needs a validation set"):
        run(*demo_args(demo_dir, tmp_path, "--val-ann", "", "--val-img", "", "--early_stopping_patience", "2",
                       "--eval_strategy", "epoch", "--max_steps", "1"))


def test_the_share_of_the_first_half_in_the_final_ema_and_the_warning_of_a_run_too_short():
    from recipe.engine.ema import early_share, lag_warning

    assert early_share(0.5, 0, 4) == 0.25  # updates 2 and 3 each keep half of what came before
    assert early_share(0.9, 10, 4) == pytest.approx(0.9 * (1 - math.exp(-0.2)) * 0.9 * (1 - math.exp(-0.3)), abs=1e-15)
    # The benchmark's demo arm (1,300 steps, decay 0.999, warm-up 100): 45% of the final EMA from the first half.
    assert early_share(0.999, 100, 1300) == pytest.approx(0.4488, abs=1e-4)
    assert lag_warning(0.999, 100, 1300) == (
        "EMA decay 0.999 averages over about 1,000 steps: 45% of the final EMA (evaluated and saved) is the weights "
        "of this 1,300-step run's first half; a short run wants a faster average: --ema_decay 0.9923 (or --use_ema "
        "false)")
    assert early_share(0.9923, 100, 1300) < 0.01 and lag_warning(0.9923, 100, 1300) is None  # the suggestion is quiet
    # RF-DETR's 0.993 / 100 on the demo's length; the originals' 0.9999 / 2000, whose warm-up keeps a 20,000-step run
    # close to its weights; a run of unknown length.
    assert lag_warning(0.993, 100, 1300) is None and lag_warning(0.9999, 2000, 20000) is None
    assert lag_warning(0.999, 100, 0) is None
    assert lag_warning(0.5, 0, 4).endswith("a faster average: --use_ema false")  # no decay in [0, 1) to suggest
