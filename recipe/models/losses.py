"""The detection loss as the original recipes weight it, computed in float32.

transformers' loss functions return (loss, loss_dict, aux) with `loss_dict` holding the unweighted terms
(auxiliary decoder layers suffixed `_0`, `_1`, ...); the recipe re-weights them with its coefficients.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib

import torch

from recipe.core.stage_timer import stage
from recipe.models.families import Family, base_term


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
    if family.corner_loss_criterion:
        original = functools.partial(aligned_corner_loss, family.corner_loss_criterion)

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
    # cost most of the compile time of a run (docs/guide.md "On a GPU").
    model.loss_function = torch.compiler.disable(float32_loss)
    if family.encoder_proposal_loss and getattr(model.config, "two_stage", False):
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


def aligned_corner_loss(criterion_path: str, logits, labels, device, pred_boxes, config, outputs_class=None,
                        outputs_coord=None, enc_topk_logits=None, enc_topk_bboxes=None, denoising_meta_values=None,
                        predicted_corners=None, initial_reference_points=None, **kwargs):
    """D-FINE / DEIMv2 loss with each decoder layer's corners paired with that layer's logits and boxes, as the
    originals pair them (Peterande/D-FINE src/zoo/dfine/dfine_decoder.py: `_set_aux_loss2(out_logits[:-1], ...,
    out_corners[:-1], ...)` with the "pre" head's output apart, as `pre_outputs`).

    transformers 5.24 stacks the pre head's logits and boxes in front of the L layers' (`intermediate_logits`: L + 1
    entries, `intermediate_predicted_corners`: L) and zips them (`loss_d_fine._set_aux_loss2`): auxiliary entry i
    gets layer i - 1's logits and boxes with layer i's corners, and the final layer no `loss_fgl` at all. Here:
    main = layer L (its `loss_fgl`; `loss_ddf` 0, it is its own teacher), `_aux_0.._aux_{L-2}` = layers 1..L-1
    with layer L as teacher, `_aux_{L-1}` = the pre head (class and box terms), `_aux_L` = the encoder's top-k; the
    denoising copies the same way. -> (None, loss_dict, None); the recipe weights the sum.

    Shapes: outputs_class [B, L+1, Q, C], outputs_coord [B, L+1, Q, 4] cxcywh_norm, predicted_corners
    [B, L, Q, 4 (bins + 1)], initial_reference_points [B, L, Q, 4]; Q includes the denoising queries in training."""
    module, _, name = criterion_path.rpartition(".")
    criterion = getattr(importlib.import_module(module), name)(config).to(device)
    outputs = _corner_outputs(outputs_class, outputs_coord, predicted_corners, initial_reference_points,
                              enc_topk_logits, enc_topk_bboxes, denoising_meta_values, config.auxiliary_loss)
    return None, criterion(outputs, labels), None


def _corner_outputs(outputs_class, outputs_coord, predicted_corners, initial_reference_points, enc_topk_logits,
                    enc_topk_bboxes, denoising_meta_values, auxiliary_loss: bool) -> dict:
    """The criterion's `outputs` dict with each layer's terms paired as the originals pair them (see
    `aligned_corner_loss`)."""
    # In eval mode the decoder keeps only its last layer (no pre head): nothing to strip then.
    has_pre = outputs_class.shape[1] == predicted_corners.shape[1] + 1
    classes, boxes = outputs_class[:, int(has_pre):], outputs_coord[:, int(has_pre):].clamp(min=0, max=1)
    pre = (outputs_class[:, 0], outputs_coord[:, 0].clamp(min=0, max=1)) if has_pre else None
    corners, refs = predicted_corners, initial_reference_points
    dn = None
    if denoising_meta_values is not None:
        split = denoising_meta_values["dn_num_split"]
        (dn_classes, classes), (dn_boxes, boxes) = (torch.split(t, split, dim=2) for t in (classes, boxes))
        (dn_corners, corners), (dn_refs, refs) = (torch.split(t, split, dim=2) for t in (corners, refs))
        dn_pre = None
        if pre is not None:
            (dn_pre_class, pre_class), (dn_pre_boxes, pre_boxes) = (torch.split(t, split, dim=1) for t in pre)
            pre, dn_pre = (pre_class, pre_boxes), (dn_pre_class, dn_pre_boxes)
        dn = (dn_classes, dn_boxes, dn_corners, dn_refs, dn_pre)

    def layer(cls, box, corner, ref, i, teacher):
        return {"logits": cls[:, i], "pred_boxes": box[:, i], "pred_corners": corner[:, i], "ref_points": ref[:, i],
                "teacher_corners": corner[:, teacher], "teacher_logits": cls[:, teacher]}

    last = classes.shape[1] - 1
    outputs = layer(classes, boxes, corners, refs, last, last)
    if auxiliary_loss:
        outputs["auxiliary_outputs"] = [
            *(layer(classes, boxes, corners, refs, i, last) for i in range(last)),
            *([{"logits": pre[0], "pred_boxes": pre[1]}] if pre is not None else []),
            *([{"logits": enc_topk_logits, "pred_boxes": enc_topk_bboxes.clamp(min=0, max=1)}]
              if enc_topk_logits is not None else [])]
        if dn is not None:
            dn_classes, dn_boxes, dn_corners, dn_refs, dn_pre = dn
            outputs["dn_auxiliary_outputs"] = [
                *(layer(dn_classes, dn_boxes, dn_corners, dn_refs, i, last) for i in range(last + 1)),
                *([{"logits": dn_pre[0], "pred_boxes": dn_pre[1]}] if dn_pre is not None else [])]
            outputs["denoising_meta_values"] = denoising_meta_values
    return outputs


def _to_float32(x):
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.float()
    return x


def _autocast_off(device_type: str):
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()
