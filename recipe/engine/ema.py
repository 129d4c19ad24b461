"""Exponential moving average of the weights, as the RT-DETR / D-FINE / DEIM / RF-DETR originals train with it.

The originals evaluate and ship the EMA model; so does the recipe (`DetectionTrainer.evaluate`, `save_model`). The
decay ramps up as `decay * (1 - exp(-updates / warmup_steps))`: RT-DETR / D-FINE / DEIM `ModelEMA` (decay 0.9999,
warmups 2000; lyuwenyu/RT-DETR rtdetrv2_pytorch/src/optim/ema.py) and RF-DETR's `ModelEma` (decay 0.993, tau 100;
roboflow/rf-detr) are this one formula with `warmup_steps` = warmups or tau.

The state (the averaged tensors and the update count) is saved beside every checkpoint's weights as
`ema.safetensors`, so a resumed run continues the same average.
"""

from __future__ import annotations

import contextlib
import math
import os

import torch
from safetensors.torch import load_file, save_file

from recipe.core.distributed import broadcast_from_main
from recipe.core.errors import ConfigError

EMA_FILE = "ema.safetensors"


def early_share(decay: float, warmup_steps: int, total_steps: int) -> float:
    """The share of the final EMA that comes from the weights of the run's first half: the product of the decays of
    the updates after it (each update keeps `decay_n` of what came before)."""
    share = 1.0
    for n in range(total_steps // 2, total_steps):
        share *= decay * (1.0 - math.exp(-n / warmup_steps)) if warmup_steps > 0 else decay
    return share


def lag_warning(decay: float, warmup_steps: int, total_steps: int, limit: float = 0.2) -> str | None:
    """A line for a run too short for its EMA, or None. The originals' 0.9999 averages over about 10,000 steps,
    made for runs of several hundred thousand (its warm-up shortens it for a while); on the demo (1,300 steps) decay
    0.999, warm-up 100 put 45% of the final EMA in the first half's weights and scored map 0.362 against 0.411 without
    EMA (benchmarks/RESULTS.md)."""
    if total_steps <= 0:
        return None
    share = early_share(decay, warmup_steps, total_steps)
    if share <= limit:
        return None
    faster = 1 - 10 / total_steps  # an average over the last tenth of the run
    hint = f"--ema_decay {faster:.4g} (or --use_ema false)" if faster > 0 else "--use_ema false"
    return (f"EMA decay {decay} averages over about {1 / (1 - decay):,.0f} steps: {share:.0%} of the final EMA "
            f"(evaluated and saved) is the weights of this {total_steps:,}-step run's first half; a short run wants "
            f"a faster average: {hint}")


class ModelEma:
    """The EMA of a model's floating-point parameters and buffers (integer buffers are copied).

    `update(model)` after each optimizer step; `applied(model)` swaps the averaged values in for a block (evaluation,
    saving) and restores the trained ones after it."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup_steps: int):
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay, self.warmup_steps, self.updates = decay, warmup_steps, 0
        self.shadow = {name: t.detach().clone() for name, t in self._state(model).items()}

    @staticmethod
    def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        # Parameters without duplicates (tied heads are one tensor) and every buffer, by the live model's names.
        state = dict(model.named_parameters())
        state.update(model.named_buffers())
        return state

    def current_decay(self) -> float:
        """The decay of the next update: decay * (1 - exp(-updates / warmup_steps)) (0 on the first update)."""
        if self.warmup_steps <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-self.updates / self.warmup_steps))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = self.current_decay()
        state = self._state(model)
        floats = [(self.shadow[n], t.detach()) for n, t in state.items() if t.is_floating_point()]
        if floats:
            shadows, values = zip(*floats)
            torch._foreach_lerp_(list(shadows), list(values), 1.0 - decay)
        for name, value in state.items():
            if not value.is_floating_point():
                self.shadow[name].copy_(value)
        self.updates += 1

    @torch.no_grad()
    def synchronize(self) -> None:
        """Several processes: every rank takes rank 0's EMA. The parameters agree (DDP averages the gradients), but
        BatchNorm's running statistics are each rank's own between DDP's buffer broadcasts, so the averages drift
        apart; called by every rank (a collective) before the EMA is evaluated or saved, so all ranks score and keep
        one model. One process: nothing to do."""
        broadcast_from_main(self.shadow.values())

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self, model: torch.nn.Module):
        """The model holds the EMA values inside the block, its trained values again after it."""
        state = self._state(model)
        backup = {name: t.detach().clone() for name, t in state.items()}
        try:
            for name, t in state.items():
                t.copy_(self.shadow[name])
            yield model
        finally:
            for name, t in state.items():
                t.copy_(backup[name])

    def save(self, folder: str) -> None:
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.shadow.items()}
        save_file(tensors, os.path.join(folder, EMA_FILE), metadata={
            "updates": str(self.updates), "decay": repr(self.decay), "warmup_steps": str(self.warmup_steps)})

    def load(self, folder: str) -> None:
        """The state saved in `folder` (a checkpoint); a missing file or a key that does not match is an error."""
        path = os.path.join(folder, EMA_FILE)
        if not os.path.isfile(path):
            raise ConfigError(f"{folder}: no {EMA_FILE} in this checkpoint, but use_ema is on; resume it with "
                              "--use_ema false (as it was trained) or start a new run")
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(path)
        missing, unexpected = sorted(set(self.shadow) - set(tensors)), sorted(set(tensors) - set(self.shadow))
        if missing or unexpected:
            raise ConfigError(f"{path}: EMA keys do not match the model (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}); was it written for another model?")
        with torch.no_grad():
            for name, t in self.shadow.items():
                t.copy_(tensors[name])
        self.updates = int(metadata.get("updates", 0))
