"""Optimizer parameter groups as the original recipes set them (the weighted loss is `losses.py`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def build_param_groups(model: torch.nn.Module, lr: float, weight_decay: float, backbone_lr_multiplier: float = 0.1,
                       linear_proj_lr_multiplier: float = 0.1, *, backbone_keys: Iterable[str] = ("backbone",),
                       linear_proj_keys: Iterable[str] = ("sampling_offsets", "reference_points"),
                       no_decay_keys: Iterable[str] = (), vit_layer_decay: float | None = None,
                       vit_keys: Iterable[str] = (), vit_num_layers: int = 0) -> list[dict]:
    """AdamW groups as in the original recipes: backbone at lr x backbone multiplier, the linear projections
    (Deformable DETR's `sampling_offsets`/`reference_points`) at lr x linear-proj multiplier, the rest at lr.
    Weight decay applies to every parameter except biases and norm weights under `no_decay_keys` (RT-DETR's
    encoder/decoder rule), which go to `<group>_no_decay` groups. Frozen parameters are left out; empty groups
    dropped.

    `vit_layer_decay` (LW-DETR / RF-DETR): the ViT's parameters (names containing one of `vit_keys`) are grouped by
    block, `backbone_layer<id>` at lr x backbone multiplier x decay ** (vit_num_layers + 1 - id), id 0 for the
    embeddings, i + 1 for block i, vit_num_layers + 1 for the rest (the final norm); the backbone's other parts
    (the projector) train at lr, as the originals' `get_param_dict` (Atten4Vis/LW-DETR, roboflow/rf-detr
    `get_vit_lr_decay_rate`)."""
    backbone_keys, linear_proj_keys, no_decay_keys = tuple(backbone_keys), tuple(linear_proj_keys), tuple(no_decay_keys)
    vit_keys = tuple(vit_keys) if vit_layer_decay is not None else ()
    groups: dict[str, list] = {}
    lrs = {"other": lr, "backbone": lr * backbone_lr_multiplier, "linear_proj": lr * linear_proj_lr_multiplier}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if vit_keys and any(k in name for k in vit_keys):
            layer = vit_layer_id(name, vit_num_layers)
            group = f"backbone_layer{layer}"
            lrs[group] = lr * backbone_lr_multiplier * vit_layer_decay ** (vit_num_layers + 1 - layer)
        elif vit_keys:
            group = "linear_proj" if any(k in name for k in linear_proj_keys) else "other"
        else:
            group = ("backbone" if any(k in name for k in backbone_keys) else
                     "linear_proj" if any(k in name for k in linear_proj_keys) else "other")
        if any(k in name for k in no_decay_keys) and (name.endswith("bias") or "norm" in name):
            group += "_no_decay"
        groups.setdefault(group, []).append(param)
    layers = [f"backbone_layer{i}" for i in range(vit_num_layers + 2)] if vit_keys else []
    # The main group first: the Trainer logs the first group's lr as `learning_rate`.
    order = [g + suffix for g in ("other", "linear_proj", "backbone", *layers) for suffix in ("", "_no_decay")]
    return [{"params": groups[name], "lr": lrs[name.removesuffix("_no_decay")],
             "weight_decay": 0.0 if name.endswith("_no_decay") else weight_decay, "name": name}
            for name in order if name in groups]


def vit_layer_id(name: str, num_layers: int) -> int:
    """A ViT parameter's depth for layer-wise lr decay: 0 embeddings, i + 1 for `encoder.layer.<i>.`, num_layers + 1
    for what follows the blocks (the final norm)."""
    if ".embeddings." in name:
        return 0
    marker = ".encoder.layer."
    if marker in name:
        return int(name[name.index(marker) + len(marker):].split(".")[0]) + 1
    return num_layers + 1
