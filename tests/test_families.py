"""Per-family knowledge: post-processing equals each family's own, the loss terms, the encoder proposal loss."""

import math
from types import SimpleNamespace

import pytest
import torch
import transformers

from recipe.core.errors import ModelNotAvailable
from recipe.models.families import FAMILIES, family_of
from recipe.models.losses import encoder_proposal_loss
from recipe.models.postprocess import DET_BOX, DET_LABEL, DET_SCORE, postprocess_detections


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_detections_equal_the_family_post_processing(model_type):
    """Up to the top-k rule: every detection of the family's own post_process_object_detection (threshold 0)
    is among the recipe's (top-k over queries x classes), with the same score, label and box."""
    family = FAMILIES[model_type]
    torch.manual_seed(0)
    queries, classes, hw = 7, 3, torch.tensor([[120, 200]])
    logits = torch.randn(1, queries, classes + 1 if family.softmax else classes) * 3
    boxes = torch.rand(1, queries, 4) * 0.5 + 0.25
    processor = getattr(transformers, family.processor_class)()
    theirs = processor.post_process_object_detection(SimpleNamespace(logits=logits, pred_boxes=boxes),
                                                     threshold=0.0, target_sizes=hw)[0]
    ours = postprocess_detections(logits, boxes, hw, top_k=queries * classes, softmax=family.softmax)[0]
    assert len(theirs["scores"]) > 0
    for score, label, box_xyxy in zip(theirs["scores"], theirs["labels"], theirs["boxes"]):
        match = (ours[:, DET_LABEL] == label) & torch.isclose(ours[:, DET_SCORE], score.float(), atol=1e-6)
        assert match.any(), (model_type, float(score), int(label))
        x, y, w, h = ours[match][0, DET_BOX]
        torch.testing.assert_close(torch.stack([x, y, x + w, y + h]), box_xyxy.float(), atol=1e-3, rtol=0)
    # The best detection is the same for both.
    best = theirs["scores"].argmax()
    assert float(ours[0, DET_SCORE]) == pytest.approx(float(theirs["scores"][best]), abs=1e-6)


def test_softmax_families_drop_the_no_object_class():
    logits = torch.tensor([[[0.0, 0.0, 10.0]]])  # "no object" wins
    dets = postprocess_detections(logits, torch.full((1, 1, 4), 0.5), torch.tensor([[10, 10]]), softmax=True)
    assert dets.shape == (1, 2, 6) and set(dets[0, :, DET_LABEL].tolist()) == {0.0, 1.0}


def test_an_architecture_that_is_not_a_detr_family_detector_is_a_clear_error():
    with pytest.raises(ModelNotAvailable, match="model_type 'bert' is not a DETR-family detector"):
        family_of("bert")


def _focal(p, target, alpha=0.25):
    """Sigmoid focal loss of one probability (gamma 2), as in RetinaNet / Deformable DETR."""
    ce = -math.log(p) if target else -math.log(1 - p)
    p_t = p if target else 1 - p
    return (alpha if target else 1 - alpha) * ce * (1 - p_t) ** 2


def test_encoder_proposal_loss_by_hand():
    """One image, two proposals, one class channel, one target (class 3 relabelled 0). Proposal 1 sits on the
    target, so it is matched; the loss is the original's binary focal loss + L1 + GIoU on that match."""
    config = SimpleNamespace(class_cost=2, bbox_cost=5, giou_cost=2, num_labels=1, focal_alpha=0.25)
    logits = torch.tensor([[[0.0], [1.0]]])  # sigmoid: 0.5, 0.7311
    boxes = torch.tensor([[[0.2, 0.2, 0.2, 0.2], [0.5, 0.5, 0.4, 0.4]]])
    target = torch.tensor([[0.5, 0.5, 0.4, 0.2]])
    terms = encoder_proposal_loss(logits, boxes, [{"class_labels": torch.tensor([3]), "boxes": target}], config)
    p0, p1 = 0.5, 1 / (1 + math.exp(-1.0))
    # transformers' loss_labels: focal summed over proposals x classes, / num_boxes (1).
    assert terms["loss_ce_enc"].item() == pytest.approx(_focal(p0, False) + _focal(p1, True), rel=1e-5)
    assert terms["loss_bbox_enc"].item() == pytest.approx(0.2, rel=1e-5)  # |0.4 - 0.2| in h only
    # GIoU of (0.3,0.3,0.7,0.7) and (0.3,0.4,0.7,0.6): IoU = 0.08 / 0.16, enclosing box = the union.
    assert terms["loss_giou_enc"].item() == pytest.approx(1 - 0.5, rel=1e-5)
    assert set(terms) == {"loss_ce_enc", "loss_bbox_enc", "loss_giou_enc"}


def test_two_stage_deformable_detr_trains_its_encoder_proposals():
    from recipe.config.arguments import ModelArguments
    from recipe.models.loading import load_model_and_processor

    cfg = ('{"model_type": "deformable_detr", "d_model": 32, "encoder_layers": 1, "decoder_layers": 2, '
           '"encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "encoder_attention_heads": 2, "decoder_attention_heads": 2, '
           '"num_queries": 10, "two_stage_num_proposals": 10, "num_feature_levels": 1, "with_box_refine": true, '
           '"two_stage": true, "backbone_config": {"model_type": "resnet", "depths": [1, 1], '
           '"hidden_sizes": [8, 16], "embedding_size": 8, "out_features": ["stage2"]}}')
    torch.manual_seed(0)
    model, _ = load_model_and_processor(ModelArguments(model_config=cfg), {0: "a", 1: "b"})
    labels = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.2]])}]
    out = model(pixel_values=torch.rand(1, 3, 64, 64), labels=labels)
    assert {"loss_ce_enc", "loss_bbox_enc", "loss_giou_enc"} <= set(out.loss_dict)
    expected = sum(v * {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0, "cardinality_error": 0.0}[
        k.removesuffix("_enc").removesuffix("_0")] for k, v in out.loss_dict.items())
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.model.enc_output.weight.grad.abs().sum() > 0  # the proposal head learns


def test_the_family_fields_that_replaced_model_type_lists_say_what_the_lists_said():
    """Each fact once lived as a model-type list outside families.py; the entries must give the same answers."""
    from recipe.models.families import ignores_pixel_mask, size_multiple, trains_whole_backbone

    def having(attr):
        return {t for t, f in FAMILIES.items() if getattr(f, attr)}

    rt_style = {"rt_detr", "rt_detr_v2", "d_fine", "deimv2"}
    assert {t for t, f in FAMILIES.items() if f.size_multiple == 32} == rt_style
    assert {t for t, f in FAMILIES.items() if f.size_multiple != 1} == rt_style
    assert having("mask_blind") == rt_style | {"yolos"}
    assert having("windowed_vit") == {"lw_detr", "rf_detr"}
    assert {t for t, f in FAMILIES.items() if not f.auxiliary_loss} == {"yolos"}
    assert having("encoder_proposal_loss") == {"deformable_detr"}
    assert having("small_hgnet_backbones") == {"deimv2"}
    assert {t for t, f in FAMILIES.items() if not f.xavier_transformer and f.query_embeddings} == {"deformable_detr"}
    assert FAMILIES["rf_detr"].config_defaults["dropout"] == 0.0
    assert "dropout" not in FAMILIES["lw_detr"].config_defaults
    assert FAMILIES["deimv2"].backbone_keys == ("conv_encoder.model.",)
    assert FAMILIES["d_fine"].corner_loss_criterion.endswith("DFineLoss")
    assert FAMILIES["deimv2"].corner_loss_criterion.endswith("Deimv2Loss")
    # a windowed ViT pads to patch x windows; a type the recipe does not train pads as DETR does
    vit = SimpleNamespace(patch_size=16, num_windows=4)
    assert size_multiple(SimpleNamespace(model_type="rf_detr", backbone_config=vit)) == 64
    assert size_multiple(SimpleNamespace(model_type="owlv2")) == 1 and not ignores_pixel_mask("owlv2")
    hgnet = SimpleNamespace(model_type="hgnet_v2", layer_type="bottleneck", use_learnable_affine_block=False)
    assert trains_whole_backbone(SimpleNamespace(model_type="deimv2", backbone_config=hgnet))
    assert not trains_whole_backbone(SimpleNamespace(model_type="d_fine", backbone_config=hgnet))
