"""The one answer to "am I the main process?", score-once-then-share for metrics, and the group's end."""

from __future__ import annotations

import os


def _group():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def is_main_process() -> bool:
    """Rank 0 of the process group if one is formed, else of the launch (RANK), else True."""
    dist = _group()
    if dist is not None:
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def broadcast_from_main(tensors) -> None:
    """Every rank's `tensors` become rank 0's, in place (a collective: every rank calls it); no group or one process:
    nothing to do."""
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return
    for t in tensors:
        dist.broadcast(t, src=0)


def any_rank(flag: bool, device="cpu") -> bool:
    """Whether `flag` is true on any rank (a collective: every rank calls it); no group or one process: `flag`.
    `device`: where the model runs (NCCL reduces CUDA tensors only; other backends use the CPU)."""
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return flag
    import torch

    tensor = torch.tensor([int(flag)], device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return bool(tensor.item())


def end_process_group() -> None:
    """A finished multi-process run (torchrun, accelerate launch) closes its process group itself, as
    torch.distributed asks, instead of leaving it to interpreter exit (NCCL warns that this can hang). Once in
    this project's 2-process test a rank aborted with "terminate called without an active exception" and the
    launcher failed the run; that was not reproducible, so no test shows this call preventing it."""
    dist = _group()
    if dist is not None:
        dist.destroy_process_group()


def run_on_main_then_broadcast(compute):
    """Call `compute()` on rank 0 only and give every rank its result (one process: just call it)."""
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return compute()
    box = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
