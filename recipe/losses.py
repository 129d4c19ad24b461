"""The detection loss as the original recipes weight it, computed in float32.

transformers' loss functions return (loss, loss_dict, aux) with `loss_dict` holding the unweighted terms
(auxiliary decoder layers suffixed `_0`, `_1`, ...); the recipe re-weights them with its coefficients.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from .families import Family, base_term
from .timing import stage


def weighted_loss(loss_dict: dict[str, torch.Tensor], family: Family, weights: dict[str, float]) -> torch.Tensor:
    """The total loss from `loss_dict`. Families whose terms transformers already weighted: their sum.
    The others: sum of weight x term, a term's weight being its base term's (`loss_ce_0` -> `loss_ce`).
    A term the family does not know raises (KeyError naming it)."""
    total = 0.0
    for term, value in loss_dict.items():
        family.weight_of(term)  # raises on an unknown term
        total = total + (value if family.weighted_terms else value * weights[base_term(term)])
    return total


def install_recipe_loss(model, family: Family, weights: dict[str, float]) -> None:
    """Run the Hungarian matcher and the losses in float32 (autocast off) and weight `loss_dict` with the
    family's original-recipe weights; two-stage Deformable DETR also trains its encoder proposals.

    Under fp16 the matcher's `log(p + 1e-8)` turns into log(0) = -inf: 5.23+ then matches wrongly
    (transformers #42202). transformers also fixes the weight of loss_ce at 1 (Deformable DETR: 2).
    """
    original = model.loss_function

    def float32_loss(logits, labels, device, pred_boxes, config, *args, **kwargs):
        to32 = _to_float32
        if not model.training and getattr(config, "group_detr", 1) > 1:
            # LW-DETR / RF-DETR query groups exist only in training; an eval forward has one group, and the
            # loss split into `group_detr` groups would fail (transformers 5.24).
            config = copy.copy(config)
            config.group_detr = 1
        labels = [{k: to32(v) for k, v in t.items()} for t in labels]
        with _autocast_off(logits.device.type), stage("loss"):
            _, loss_dict, aux = original(to32(logits), labels, device, to32(pred_boxes), config,
                                         *[to32(a) for a in args], **{k: to32(v) for k, v in kwargs.items()})
        return weighted_loss(loss_dict, family, weights), loss_dict, aux

    # Left out of --torch_compile: the matcher calls scipy and the loss reads `.item()` (graph breaks), and every
    # new count of target boxes recompiled it until dynamo's limit (8) sent it back to eager anyway; compiling it
    # cost most of the compile time of a run (README "On a GPU").
    model.loss_function = torch.compiler.disable(float32_loss)
    if family.model_type == "deformable_detr" and getattr(model.config, "two_stage", False):
        _add_encoder_proposal_loss(model, family, weights)


def _add_encoder_proposal_loss(model, family: Family, weights: dict[str, float]) -> None:
    """Wrap forward: with labels, add the `_enc` terms (see `encoder_proposal_loss`) to loss and loss_dict."""
    forward = model.forward

    def forward_with_encoder_loss(*args, **kwargs):
        outputs = forward(*args, **kwargs)
        labels = kwargs.get("labels")
        if labels is None or outputs.loss is None or outputs.enc_outputs_class is None:
            return outputs
        with _autocast_off(outputs.loss.device.type):
            terms = encoder_proposal_loss(outputs.enc_outputs_class.float(),
                                          outputs.enc_outputs_coord_logits.float().sigmoid(),
                                          [{k: _to_float32(v) for k, v in t.items()} for t in labels], model.config)
        outputs.loss = outputs.loss + weighted_loss(terms, family, weights)
        outputs.loss_dict.update(terms)
        return outputs

    model.forward = forward_with_encoder_loss


def encoder_proposal_loss(enc_logits: torch.Tensor, enc_boxes: torch.Tensor, labels: list[dict], config) -> dict:
    """Two-stage Deformable DETR's loss on the encoder proposals, as the original trains them
    (fundamentalvision/Deformable-DETR models/deformable_detr.py, SetCriterion: `enc_outputs` with every
    target relabelled 0, matched and scored with the decoder's losses); transformers computes none.

    enc_logits [B, S, C], enc_boxes [B, S, 4] `cxcywh_norm` -> {loss_ce_enc, loss_bbox_enc, loss_giou_enc}
    (unweighted; num_boxes = the batch's target count, at least 1).
    """
    from transformers.loss.loss_deformable_detr import DeformableDetrHungarianMatcher, DeformableDetrImageLoss

    binary = [{**t, "class_labels": torch.zeros_like(t["class_labels"])} for t in labels]
    matcher = DeformableDetrHungarianMatcher(class_cost=config.class_cost, bbox_cost=config.bbox_cost,
                                             giou_cost=config.giou_cost)
    criterion = DeformableDetrImageLoss(matcher=matcher, num_classes=config.num_labels,
                                        focal_alpha=config.focal_alpha, losses=["labels", "boxes"])
    terms = criterion({"logits": enc_logits, "pred_boxes": enc_boxes}, binary)
    return {f"{k}_enc": v for k, v in terms.items()}


def _to_float32(x):
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.float()
    return x


def _autocast_off(device_type: str):
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()
