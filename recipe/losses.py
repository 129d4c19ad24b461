"""The detection loss as the original recipes weight it, computed in float32.

transformers' loss functions return (loss, loss_dict, aux) with `loss_dict` holding the unweighted terms
(auxiliary decoder layers suffixed `_0`, `_1`, ...); the recipe re-weights them with its coefficients.
"""

from __future__ import annotations

import contextlib

import torch


def loss_weights(class_coefficient: float, bbox_coefficient: float, giou_coefficient: float,
                 num_aux: int) -> dict[str, float]:
    """Weights for `loss_dict` terms; auxiliary decoder layers carry the same weights, suffixed `_0`, `_1`..."""
    base = {"loss_ce": class_coefficient, "loss_bbox": bbox_coefficient, "loss_giou": giou_coefficient}
    weights = dict(base)
    for i in range(num_aux):
        weights.update({f"{k}_{i}": v for k, v in base.items()})
    return weights


def weighted_loss(loss_dict: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Sum of weight x term over the terms that have a weight (cardinality_error is a log-only metric)."""
    missing = [k for k in weights if k not in loss_dict]
    if missing:
        raise KeyError(f"loss terms {missing} not in the model's loss_dict {sorted(loss_dict)}")
    return sum(loss_dict[k] * w for k, w in weights.items())


def install_float32_loss(model, *, class_coefficient: float = 2.0, bbox_coefficient: float = 5.0,
                         giou_coefficient: float = 2.0) -> None:
    """Run the Hungarian matcher and the losses in float32 (autocast off) and weight `loss_dict` with the
    recipe's coefficients.

    Under fp16 the matcher's `log(p + 1e-8)` turns into log(0) = -inf and scipy refuses the cost matrix
    (transformers #42202). transformers also fixes the weight of loss_ce at 1 (original recipe: 2).
    """
    original = model.loss_function
    num_aux = model.config.decoder_layers - 1 if model.config.auxiliary_loss else 0
    weights = loss_weights(class_coefficient, bbox_coefficient, giou_coefficient, num_aux)

    def float32_loss(logits, labels, device, pred_boxes, config, *args, **kwargs):
        to32 = _to_float32
        labels = [{k: to32(v) for k, v in t.items()} for t in labels]
        with _autocast_off(logits.device.type):
            loss, loss_dict, aux = original(to32(logits), labels, device, to32(pred_boxes), config,
                                            *[to32(a) for a in args], **{k: to32(v) for k, v in kwargs.items()})
        return weighted_loss(loss_dict, weights), loss_dict, aux

    model.loss_function = float32_loss


def _to_float32(x):
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.float()
    return x


def _autocast_off(device_type: str):
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()
