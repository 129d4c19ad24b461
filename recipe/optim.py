"""Optimizer parameter groups as the original recipes set them (the weighted loss is `losses.py`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def build_param_groups(model: torch.nn.Module, lr: float, weight_decay: float, backbone_lr_multiplier: float = 0.1,
                       linear_proj_lr_multiplier: float = 0.1, *, backbone_keys: Iterable[str] = ("backbone",),
                       linear_proj_keys: Iterable[str] = ("sampling_offsets", "reference_points"),
                       no_decay_keys: Iterable[str] = ()) -> list[dict]:
    """AdamW groups as in the original recipes: backbone at lr x backbone multiplier, the linear projections
    (Deformable DETR's `sampling_offsets`/`reference_points`) at lr x linear-proj multiplier, the rest at lr.
    Weight decay applies to every parameter except biases and norm weights under `no_decay_keys` (RT-DETR's
    encoder/decoder rule), which go to `<group>_no_decay` groups. Frozen parameters are left out; empty groups
    dropped."""
    backbone_keys, linear_proj_keys, no_decay_keys = tuple(backbone_keys), tuple(linear_proj_keys), tuple(no_decay_keys)
    groups: dict[str, list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = ("backbone" if any(k in name for k in backbone_keys) else
                 "linear_proj" if any(k in name for k in linear_proj_keys) else "other")
        if any(k in name for k in no_decay_keys) and (name.endswith("bias") or "norm" in name):
            group += "_no_decay"
        groups.setdefault(group, []).append(param)
    lrs = {"other": lr, "backbone": lr * backbone_lr_multiplier, "linear_proj": lr * linear_proj_lr_multiplier}
    order = [g + suffix for g in ("backbone", "linear_proj", "other") for suffix in ("", "_no_decay")]
    return [{"params": groups[name], "lr": lrs[name.removesuffix("_no_decay")],
             "weight_decay": 0.0 if name.endswith("_no_decay") else weight_decay, "name": name}
            for name in order if name in groups]
