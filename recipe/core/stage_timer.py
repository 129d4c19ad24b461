"""Opt-in stage timing for benchmarks: seconds summed per named stage, in this process.

The recipe marks its stages (`with stage("postprocess"):`, `time_forward(model)`); nothing is recorded unless
a caller runs the code inside `with record() as times:`. Unrecorded, a mark costs one global read. Stages
run by dataloader worker processes are not seen: measure with 0 workers.
"""

from __future__ import annotations

import contextlib
import time


class StageTimer:
    """Seconds per stage, summed (`seconds`), and the images the transform read (`images`)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.images = 0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


_active: StageTimer | None = None


def active() -> StageTimer | None:
    """The timer of the enclosing `record()`, or None."""
    return _active


@contextlib.contextmanager
def record():
    """`with record() as times:` collects every marked stage run inside the block into `times` (a StageTimer)."""
    global _active
    previous, _active = _active, StageTimer()
    try:
        yield _active
    finally:
        _active = previous


@contextlib.contextmanager
def stage(name: str):
    """Time the block as `name` when a `record()` is active; stages may nest (each is summed on its own)."""
    timer = _active
    if timer is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timer.add(name, time.perf_counter() - start)


def time_forward(module, name: str = "forward") -> None:
    """Time every call of `module` (its whole forward, the loss inside included) as `name` when recording.

    Through forward hooks, so loops that call the module (the Trainer's prediction step) need no mark."""
    starts: list[float] = []

    def before(*_):
        if _active is not None:
            starts.append(time.perf_counter())

    def after(*_):
        if starts:
            elapsed = time.perf_counter() - starts.pop()
            if _active is not None:
                _active.add(name, elapsed)

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after, always_call=True)  # also when forward raises: starts stays paired
