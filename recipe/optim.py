"""Optimizer parameter groups and the weighted detection loss (the original Deformable DETR recipe)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def build_param_groups(model: torch.nn.Module, lr: float, weight_decay: float, backbone_lr_multiplier: float = 0.1,
                       linear_proj_lr_multiplier: float = 0.1, backbone_keys: Iterable[str] = ("backbone",),
                       linear_proj_keys: Iterable[str] = ("sampling_offsets", "reference_points"),
                       ) -> list[dict]:
    """Three AdamW groups as in Deformable DETR's main.py: backbone at lr x backbone multiplier,
    `sampling_offsets`/`reference_points` projections at lr x linear-proj multiplier, the rest at lr.
    Weight decay applies to every group (as there). Frozen parameters are left out; empty groups dropped."""
    backbone_keys, linear_proj_keys = tuple(backbone_keys), tuple(linear_proj_keys)
    groups = {"backbone": [], "linear_proj": [], "other": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if any(k in name for k in backbone_keys):
            groups["backbone"].append(param)
        elif any(k in name for k in linear_proj_keys):
            groups["linear_proj"].append(param)
        else:
            groups["other"].append(param)
    lrs = {"other": lr, "backbone": lr * backbone_lr_multiplier, "linear_proj": lr * linear_proj_lr_multiplier}
    return [{"params": params, "lr": lrs[name], "weight_decay": weight_decay, "name": name}
            for name, params in groups.items() if params]
