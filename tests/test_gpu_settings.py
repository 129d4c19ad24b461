"""GPU settings, as far as a CPU can check them: `--torch_compile` and `--bf16` train the demo model with finite,
falling losses (benchmarks/RESULTS.md has the measured ones; docs/guide.md "On a GPU" says what is expected)."""

import json
import math

import pytest

from conftest import demo_args
from recipe.train import run


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--torch_compile", "true"], ["--bf16", "true", "--use_cpu", "true"]],
                         ids=["torch_compile", "bf16"])
def test_gpu_setting_trains_with_finite_falling_losses(demo_dir, tmp_path, flags):
    # --use_cpu: TrainingArguments refuses --bf16 without CUDA unless told the CPU is meant (--amp does that itself).
    run(*demo_args(demo_dir, tmp_path, *flags, "--max_steps", "8", "--per_device_train_batch_size", "4",
                   "--warmup_steps", "0", "--learning_rate", "5e-4", "--val-ann", "", "--val-img", ""))
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    losses = [entry["loss"] for entry in history if "loss" in entry]
    print(flags, "losses", losses)  # benchmarks/RESULTS.md quotes them (pytest -s)
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-3:]) < sum(losses[:3]), losses
