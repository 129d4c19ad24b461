"""GPU settings, as far as a CPU can check them: `--torch_compile` compiles (dynamo captured graphs) and trains as
eager does; `--bf16` runs the forward in bfloat16, its losses close to float32's (docs/guide.md "On a GPU" says what
to expect on a GPU). Command 2 compiles with `aot_eager` (dynamo + AOT autograd without code generation: seconds);
the extended tier with Inductor, the Trainer's default (minutes)."""

import json
import math

import pytest
import torch
from transformers import TrainerCallback

from conftest import demo_args
from recipe.training.run import run

# 8 steps of batch 4 on the demo's 24 training scenes, no warm-up, no evaluation.
EIGHT_STEPS = ("--max_steps", "8", "--per_device_train_batch_size", "4", "--warmup_steps", "0", "--learning_rate",
               "5e-4", "--val-ann", "", "--val-img", "")

# How far the compiled run's 8 losses may sit from eager's (relative). aot_eager runs eager's kernels: its 8 losses
# were eager's to the last bit (2 threads, 2026-12-06); Inductor fuses and reorders float sums.
TOLERANCE = {"aot_eager": 1e-6, "inductor": 1e-2}
# bf16 against float32, all 8 losses (the same weights and batches; only the precision differs): measured at most
# 0.17% apart (step 7: 19.417 vs 19.386; step 1: 0.017%), 2 threads, 2026-12-06.
BF16_LOSS_REL = 0.02


def losses_of(out) -> list[float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def eager_losses(demo_dir, tmp_path_factory) -> list[float]:
    tmp = tmp_path_factory.mktemp("eager")
    run(*demo_args(demo_dir, tmp, *EIGHT_STEPS))
    losses = losses_of(tmp / "out")
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses), losses
    return losses


class LinearOutputDtypes(TrainerCallback):
    """The dtypes the model's first nn.Linear puts out during training (autocast shows there)."""

    def __init__(self):
        self.dtypes = set()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(lambda module, inputs, output: self.dtypes.add(output.dtype))


@pytest.mark.slow
@pytest.mark.timeout(900)  # Inductor: several minutes of code generation on 2 cores
@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.extended)])
def test_torch_compile_compiles_and_trains_as_eager(backend, eager_losses, demo_dir, tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    run(*demo_args(demo_dir, tmp_path, "--torch_compile", "true", "--torch_compile_backend", backend, *EIGHT_STEPS))
    graphs = counters["stats"]["unique_graphs"]
    losses = losses_of(tmp_path / "out")
    print(backend, "graphs", graphs, "losses", losses, "eager", eager_losses)
    assert graphs >= 1, dict(counters["stats"])  # a flag that compiled nothing would pass the loss check alone
    assert losses == pytest.approx(eager_losses, rel=TOLERANCE[backend]), (losses, eager_losses)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bf16_runs_the_forward_in_bfloat16_close_to_float32(eager_losses, demo_dir, tmp_path):
    # --use_cpu: TrainingArguments refuses --bf16 without CUDA unless told the CPU is meant (--amp does that itself).
    dtypes = LinearOutputDtypes()
    run(*demo_args(demo_dir, tmp_path, "--bf16", "true", "--use_cpu", "true", *EIGHT_STEPS), callbacks=[dtypes])
    losses = losses_of(tmp_path / "out")
    print("bf16 losses", losses, "eager", eager_losses, "linear outputs", dtypes.dtypes)
    assert torch.bfloat16 in dtypes.dtypes, dtypes.dtypes  # autocast was on
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses), losses
    assert losses == pytest.approx(eager_losses, rel=BF16_LOSS_REL), (losses, eager_losses)
    assert losses != eager_losses  # bf16 changed the numbers: the flag had an effect
