
import pytest
import torch

from conftest import tiny_model_args
from recipe.engine.optimizer_groups import build_param_groups
from recipe.models.families import FAMILIES, loss_weights
from recipe.models.loading import load_model_and_processor
from recipe.models.losses import weighted_loss


def test_parameter_groups_follow_the_original_recipe():
    torch.manual_seed(0)
    model, _ = load_model_and_processor(tiny_model_args(), {0: "a", 1: "b"})
    groups = build_param_groups(model, lr=2e-4, weight_decay=1e-4)
    by_name = {g["name"]: g for g in groups}
    assert {k: (g["lr"], g["weight_decay"]) for k, g in by_name.items()} == {
        "backbone": (pytest.approx(2e-5), 1e-4), "linear_proj": (pytest.approx(2e-5), 1e-4),
        "other": (2e-4, 1e-4)}
    names = {id(p): n for n, p in model.named_parameters()}
    backbone = [names[id(p)] for p in by_name["backbone"]["params"]]
    proj = [names[id(p)] for p in by_name["linear_proj"]["params"]]
    other = [names[id(p)] for p in by_name["other"]["params"]]
    assert all("backbone" in n for n in backbone) and backbone
    assert all("sampling_offsets" in n or "reference_points" in n for n in proj)
    # 2 encoder + 2 decoder layers x (weight, bias) sampling_offsets, + reference_points (weight, bias)
    assert len(proj) == 10
    assert not any("backbone" in n or "sampling_offsets" in n or "reference_points" in n for n in other)
    assert len(backbone) + len(proj) + len(other) == len(list(model.parameters()))


def test_backbone_is_trainable_as_in_the_original_recipe():
    # transformers leaves an HF ResNet backbone fully frozen; the recipe restores the intended rule.
    model, _ = load_model_and_processor(tiny_model_args(train_backbone_stem=False), {0: "a"})
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(".embedder." in n or ".stages.0." in n for n in frozen)
    assert any(p.requires_grad for n, p in model.named_parameters() if ".stages.3." in n)
    model, _ = load_model_and_processor(tiny_model_args(), {0: "a"})  # random weights: everything trains
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_parameters_are_left_out():
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 2)})
    model["backbone"].requires_grad_(False)
    groups = build_param_groups(model, lr=1.0, weight_decay=0.0)
    assert [g["name"] for g in groups] == ["other"] and len(groups[0]["params"]) == 2


def test_weighted_loss_uses_class_weight_two_and_aux_terms():
    family = FAMILIES["deformable_detr"]
    weights = loss_weights(family)
    assert weights == {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0, "cardinality_error": 0.0}
    terms = {"loss_ce": 1.0, "loss_bbox": 0.5, "loss_giou": 0.25, "loss_ce_0": 3.0, "loss_bbox_0": 0.1,
             "loss_giou_0": 1.0, "cardinality_error": 100.0, "cardinality_error_0": 50.0}
    loss = weighted_loss({k: torch.tensor(v) for k, v in terms.items()}, family, weights)
    assert loss.item() == pytest.approx(2 * 1.0 + 5 * 0.5 + 2 * 0.25 + 2 * 3.0 + 5 * 0.1 + 2 * 1.0)


def test_an_unknown_loss_term_is_an_error_naming_it():
    family = FAMILIES["deformable_detr"]
    with pytest.raises(KeyError, match="loss term 'loss_vfl_dn_0' is not one the recipe knows"):
        weighted_loss({"loss_ce": torch.tensor(1.0), "loss_vfl_dn_0": torch.tensor(1.0)}, family, loss_weights(family))


def test_weighted_families_sum_their_already_weighted_terms():
    family = FAMILIES["d_fine"]
    terms = {"loss_vfl": 1.0, "loss_bbox_aux_0": 2.0, "loss_fgl_dn_1": 0.5, "loss_ddf_aux_0": 0.25}
    loss = weighted_loss({k: torch.tensor(v) for k, v in terms.items()}, family, loss_weights(family))
    assert loss.item() == pytest.approx(3.75)


def test_model_loss_is_the_recipe_weighted_sum():
    torch.manual_seed(0)
    model, _ = load_model_and_processor(tiny_model_args(), {0: "a", 1: "b"})
    labels = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.2]])}]
    out = model(pixel_values=torch.randn(1, 3, 64, 64), labels=labels)
    w = {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0, "cardinality_error": 0.0}
    expected = sum(v * w[k.removesuffix("_0")] for k, v in out.loss_dict.items())
    assert set(out.loss_dict) == {"loss_ce", "loss_bbox", "loss_giou", "cardinality_error", "loss_ce_0",
                                  "loss_bbox_0", "loss_giou_0", "cardinality_error_0"}
    torch.testing.assert_close(out.loss, expected)
    assert model.config.class_cost == 2 and model.config.auxiliary_loss is True


@pytest.mark.parametrize("hub_id", ["AnnaZhang/lwdetr_small_60e_coco", "Roboflow/rf-detr-base"])
def test_vit_backbones_get_layer_wise_lr_decay_by_hand(hub_id):
    """LW-DETR / RF-DETR: block i of the ViT at lr x 1.5 x 0.8 ** (L + 1 - (i + 1)), embeddings at 0.8 ** (L + 1),
    the final norm at 1.5 x lr, the projector and the rest at lr (the originals' get_param_dict)."""
    import json

    from published import family_model_config
    from recipe.config.arguments import ModelArguments
    from recipe.models.families import vit_depth

    model, _ = load_model_and_processor(ModelArguments(model_config=json.dumps(family_model_config(hub_id))),
                                        {0: "a", 1: "b"})
    family = FAMILIES[model.config.model_type]
    depth = vit_depth(model.config)
    assert depth == 4 and family.vit_layer_decay == 0.8
    groups = build_param_groups(model, lr=1.0, weight_decay=0.0, backbone_lr_multiplier=1.5,
                                backbone_keys=family.backbone_keys, linear_proj_keys=family.linear_proj_keys,
                                vit_layer_decay=0.8, vit_keys=family.vit_keys,
                                vit_num_layers=depth)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert len(lr_of) == len(names)
    for name, lr in lr_of.items():
        if "backbone.backbone.embeddings." in name:
            want = 1.5 * 0.8 ** 5
        elif "backbone.backbone.encoder.layer." in name:
            block = int(name.split("encoder.layer.")[1].split(".")[0])
            want = 1.5 * 0.8 ** (4 - block)
        elif "backbone.backbone." in name:
            want = 1.5
        else:
            want = 1.0
        assert lr == pytest.approx(want, rel=1e-12), name
    assert {g["name"] for g in groups} >= {f"backbone_layer{i}" for i in range(6)} - {"backbone_layer5"}
    assert any("projector" in n and lr == 1.0 for n, lr in lr_of.items())


def test_the_main_group_comes_first_so_the_logged_lr_is_the_main_one():
    """The Trainer logs param_groups[0]'s lr as `learning_rate`: it must be the main lr, not the backbone's 0.1x."""
    model, _ = load_model_and_processor(tiny_model_args(), {0: "a", 1: "b"})
    groups = build_param_groups(model, lr=1e-3, weight_decay=1e-4)
    assert groups[0]["name"] == "other" and groups[0]["lr"] == 1e-3
