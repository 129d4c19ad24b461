"""D-FINE / DEIMv2: each decoder layer's corners are scored with that layer's logits and boxes (the originals'
pairing), the final layer gets its fine-grained localisation term, the pre head and the encoder their own terms."""

import json

import pytest
import torch

from published import FAMILY_MODELS, family_model_config
from recipe.config.arguments import ModelArguments
from recipe.models.loading import load_model_and_processor

LABELS = [{"class_labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]])},
          {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.3]])}]


def _model(name):
    torch.manual_seed(0)
    args = ModelArguments(model_config=json.dumps(family_model_config(FAMILY_MODELS[name])))
    model, _ = load_model_and_processor(args, {0: "a", 1: "b"})
    return model.train()


@pytest.mark.parametrize(("name", "criterion", "class_term"), [
    ("d_fine", "transformers.loss.loss_d_fine.DFineLoss", "loss_vfl"),
    ("deimv2", "transformers.loss.loss_deimv2.Deimv2Loss", "loss_mal")])
def test_layers_are_paired_with_their_own_corners_and_every_term_is_there(name, criterion, class_term, monkeypatch):
    import importlib

    module, _, cls = criterion.rpartition(".")
    klass = getattr(importlib.import_module(module), cls)
    seen = {}
    forward = klass.forward

    def recording(self, outputs, targets):
        seen["outputs"] = outputs
        return forward(self, outputs, targets)

    monkeypatch.setattr(klass, "forward", recording)
    model = _model(name)
    out = model(pixel_values=torch.rand(2, 3, 128, 128), labels=LABELS)
    layers = model.config.decoder_layers
    assert layers == 2
    split = out.denoising_meta_values["dn_num_split"]
    logits = torch.split(out.intermediate_logits, split, dim=2)[1]        # [B, L+1, Q, C]: pre, layer 1..L
    corners = torch.split(out.intermediate_predicted_corners, split, dim=2)[1]  # [B, L, Q, 4 (bins+1)]
    got = seen["outputs"]
    # main = the last layer, with its own corners (its loss_fgl) and itself as teacher (loss_ddf 0)
    assert torch.equal(got["logits"], logits[:, layers]) and torch.equal(got["pred_corners"], corners[:, layers - 1])
    aux = got["auxiliary_outputs"]
    assert len(aux) == layers + 1  # layers 1..L-1, the pre head, the encoder's top-k
    for i in range(layers - 1):
        assert torch.equal(aux[i]["logits"], logits[:, i + 1]) and torch.equal(aux[i]["pred_corners"], corners[:, i])
        assert torch.equal(aux[i]["teacher_corners"], corners[:, layers - 1])
    assert torch.equal(aux[layers - 1]["logits"], logits[:, 0]) and "pred_corners" not in aux[layers - 1]
    assert torch.equal(aux[layers]["logits"], out.enc_topk_logits)
    dense = {class_term, "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf"}
    plain = {class_term, "loss_bbox", "loss_giou"}
    want = {*dense, *(f"{t}_aux_0" for t in dense), *(f"{t}_aux_1" for t in plain), *(f"{t}_aux_2" for t in plain),
            *(f"{t}_dn_{i}" for t in dense for i in range(layers)), *(f"{t}_dn_{layers}" for t in plain)}
    assert set(out.loss_dict) == want
    assert out.loss_dict["loss_ddf"].item() == 0.0  # the final layer is its own teacher
    assert out.loss_dict["loss_fgl"].item() > 0.0


def test_transformers_own_pairing_leaves_the_final_layer_without_its_fgl_term():
    """What the recipe corrects (transformers 5.24 `loss_d_fine._set_aux_loss2` zips L + 1 logits with L corners);
    skipped once the installed transformers scores the final layer's corners itself."""
    from transformers.loss.loss_d_fine import DFineForObjectDetectionLoss

    model = _model("d_fine")
    out = model(pixel_values=torch.rand(2, 3, 128, 128), labels=LABELS)
    _, upstream, _ = DFineForObjectDetectionLoss(
        out.logits, LABELS, "cpu", out.pred_boxes, model.config, out.intermediate_logits,
        out.intermediate_reference_points, enc_topk_logits=out.enc_topk_logits, enc_topk_bboxes=out.enc_topk_bboxes,
        denoising_meta_values=out.denoising_meta_values, predicted_corners=out.intermediate_predicted_corners,
        initial_reference_points=out.initial_reference_points)
    if "loss_fgl" in upstream:
        pytest.skip("the installed transformers scores the final layer's corners: the recipe's pairing may go")
    assert "loss_fgl_aux_0" in upstream and "loss_fgl" not in upstream


def test_an_evaluation_forward_with_labels_has_the_last_layer_only():
    """In eval mode the decoder keeps only its last layer (no pre head, no denoising): main terms and the encoder's."""
    model = _model("d_fine").eval()
    with torch.no_grad():
        out = model(pixel_values=torch.rand(2, 3, 128, 128), labels=LABELS)
    assert out.intermediate_logits.shape[1] == 1
    assert set(out.loss_dict) == {"loss_vfl", "loss_bbox", "loss_giou", "loss_fgl", "loss_ddf", "loss_vfl_aux_0",
                                  "loss_bbox_aux_0", "loss_giou_aux_0"}
