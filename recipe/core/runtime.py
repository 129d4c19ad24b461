"""Runtime facts a run needs before it starts: precision and the process group."""

from __future__ import annotations

import logging
import os
import warnings

import torch

from recipe.core.distributed import is_main_process

logger = logging.getLogger("recipe")


def resolve_precision(train_args) -> str:
    """--amp: bf16 where supported, else fp16 on CUDA; on CPU bf16 if the CPU supports it, else fp32."""
    if not train_args.amp or train_args.bf16 or train_args.fp16:
        return "bf16" if train_args.bf16 else "fp16" if train_args.fp16 else "fp32"
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            train_args.bf16 = True
            return "bf16"
        train_args.fp16 = True
        return "fp16"
    if cpu_supports_bf16():
        train_args.bf16 = True
        return "bf16"
    warnings.warn("--amp: no CUDA and this CPU has no native bf16; training in fp32", stacklevel=2)
    return "fp32"


def check_world_size(train_args) -> None:
    """A multi-process launch that ends up with world size 1 trains N separate models: never silently."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and train_args.world_size != launched:
        raise RuntimeError(f"launched {launched} processes but the Trainer formed a group of "
                           f"{train_args.world_size}; on a machine without CUDA pass --use_cpu true")
    if launched > 1 and is_main_process():
        logger.warning("distributed run: %d processes (%s)", launched, train_args.parallel_mode)


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False
