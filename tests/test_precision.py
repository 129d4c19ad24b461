"""fp16: the matcher and losses run in float32, so extreme fp16 logits still give a finite loss."""

import pytest
import torch

from conftest import tiny_model_args
from recipe.models.loading import load_model_and_processor


def _extreme_inputs():
    torch.manual_seed(0)
    logits = torch.zeros(2, 50, 3).half()
    logits[:, 40:] = -30.0  # sigmoid underflows to 0 in fp16
    logits[0, :5, 0] = 60000.0  # near the fp16 maximum, on a class the targets use
    pred_boxes = torch.rand(2, 50, 4).mul(0.5).add(0.25).half()
    labels = [{"class_labels": torch.tensor([0, 2]),
               "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]])},
              {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.6, 0.4, 0.3, 0.2]])}]
    return logits, pred_boxes, labels


def test_fp16_logits_with_extreme_values_give_a_finite_loss():
    model, _ = load_model_and_processor(tiny_model_args(auxiliary_loss=False), {0: "a", 1: "b", 2: "c"})
    logits, pred_boxes, labels = _extreme_inputs()
    loss, loss_dict, _ = model.loss_function(logits, labels, "cpu", pred_boxes, model.config)
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(torch.isfinite(v) for v in loss_dict.values())


def test_wrapper_equals_float32_and_plain_fp16_matching_differs():
    # transformers 5.x replaces the -inf costs of fp16 (log(0), transformers #42202) by the largest cost, so
    # fp16 no longer crashes: it silently matches the most confident queries last. The wrapper computes
    # exactly what float32 computes.
    from transformers.loss.loss_deformable_detr import DeformableDetrHungarianMatcher
    from transformers.loss.loss_utils import LOSS_MAPPING

    model, _ = load_model_and_processor(tiny_model_args(auxiliary_loss=False), {0: "a", 1: "b", 2: "c"})
    logits, pred_boxes, labels = _extreme_inputs()
    wrapped, wrapped_dict, _ = model.loss_function(logits, labels, "cpu", pred_boxes, model.config)
    _, plain_dict, _ = LOSS_MAPPING[model.loss_type](logits.float(), labels, "cpu", pred_boxes.float(), model.config)
    for key in ("loss_ce", "loss_bbox", "loss_giou"):
        torch.testing.assert_close(wrapped_dict[key], plain_dict[key])

    matcher = DeformableDetrHungarianMatcher(class_cost=2, bbox_cost=5, giou_cost=2)
    f32 = matcher({"logits": logits.float(), "pred_boxes": pred_boxes.float()}, labels)
    # CPU has no fp16 cdist, so only the class cost (the part that overflows) is fp16 here.
    f16 = matcher({"logits": logits, "pred_boxes": pred_boxes.float()}, labels)
    assert int(f32[0][0][0]) < 5  # float32: the confident class-0 query matches the class-0 target
    assert int(f16[0][0][0]) >= 5  # fp16: that query is pushed to the largest cost


class _Args:
    def __init__(self, amp=True):
        self.amp, self.bf16, self.fp16 = amp, False, False


def test_amp_picks_bf16_on_cuda_that_supports_it(monkeypatch):
    from recipe.core import runtime as train
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    args = _Args()
    assert train.resolve_precision(args) == "bf16" and args.bf16 and not args.fp16


def test_amp_falls_back_to_fp16_on_older_cuda(monkeypatch):
    from recipe.core import runtime as train
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    args = _Args()
    assert train.resolve_precision(args) == "fp16" and args.fp16 and not args.bf16


def test_amp_on_cpu_uses_bf16_if_available_else_warns_fp32(monkeypatch):
    from recipe.core import runtime as train
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train, "cpu_supports_bf16", lambda: True)
    assert train.resolve_precision(_Args()) == "bf16"
    monkeypatch.setattr(train, "cpu_supports_bf16", lambda: False)
    args = _Args()
    with pytest.warns(UserWarning, match="fp32"):
        assert train.resolve_precision(args) == "fp32"
    assert not args.bf16 and not args.fp16
    assert train.resolve_precision(_Args(amp=False)) == "fp32"
