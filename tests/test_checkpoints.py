"""Published checkpoints (random weights, published configs, in a local hub cache): fine-tuning on other classes.

For every checkpoint: the class-dependent tensors are the only ones re-initialised (checked tensor by tensor
against the checkpoint), the same classes re-initialise nothing, the model trains and its loss falls, and the
family's config fine-tunes it offline end to end into a folder that `from_pretrained` and `pipeline` load.
"""

import json
import math

import pytest
import torch
from transformers import AutoModelForObjectDetection

from conftest import ROOT
from published import PUBLISHED
from recipe.config.arguments import ModelArguments
from recipe.config.load import parse_config
from recipe.core.errors import ModelNotAvailable
from recipe.models.families import family_of, size_multiple
from recipe.models.loading import load_model_and_processor
from recipe.models.sources import check_model_available
from recipe.training.run import run

CONFIG_OF = {"deformable_detr": "deformable_detr_coco", "table-transformer": "table_transformer",
             "dab-detr": "dab_detr"}
FIVE = {i: f"class{i}" for i in range(5)}


def _source(hub_id):
    model, info = AutoModelForObjectDetection.from_pretrained(hub_id, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model


@pytest.mark.parametrize("hub_id", sorted(PUBLISHED))
def test_reheading_keeps_every_class_independent_tensor(offline_hub, hub_id):
    source = _source(hub_id)
    c = source.config.num_labels
    before = _tensors(source)
    torch.manual_seed(0)
    model, _ = load_model_and_processor(ModelArguments(model_name_or_path=hub_id, offline=True), FIVE)
    after = _tensors(model)
    assert set(after) == set(before) and not any(p.is_meta for p in after.values())
    reinit = sorted(n for n in after if after[n].shape != before[n].shape or not torch.equal(after[n], before[n]))
    assert reinit == model.reinitialised_keys and reinit
    for name in reinit:  # only tensors sized by the class count
        assert after[name].shape != before[name].shape, name
        assert {c, c + 1} & set(before[name].shape) and {5, 6} & set(after[name].shape), name
    assert model.config.num_labels == 5 and model.config.id2label == FIVE


def _tensors(model) -> dict:
    """Parameters and buffers by name: a small backbone's norms are parameters where the recipe trains them
    (`train_backbone_norms`) and buffers in the frozen norms `from_pretrained` builds; their counters are left out."""
    tensors = {**dict(model.named_buffers()), **dict(model.named_parameters(remove_duplicate=False))}
    return {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}


# Random-weight RF-DETR starts slowly: its decoder box head is zero-initialised (decoder boxes = the encoder's top-k
# proposals, loss_bbox == loss_bbox_enc) and the top-k choice shifts as the encoder scores train, so at lr 1e-4 the
# loss drifts up for 20 steps (17.96 -> 19.0); at lr 1e-3 it rises for ~10 steps, then falls (18.2 -> 15.3 by 40).
STEPS_AND_LR = {"Roboflow/rf-detr-base": (40, 1e-3)}


@pytest.mark.parametrize("hub_id", sorted(PUBLISHED))
def test_same_classes_reinitialise_nothing(offline_hub, hub_id):
    source = _source(hub_id)
    same = dict(source.config.id2label)
    model, _ = load_model_and_processor(ModelArguments(model_name_or_path=hub_id, offline=True), same)
    mine, theirs = _tensors(model), _tensors(source)
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        assert torch.equal(tensor, theirs[name]), name


# 20 steps of a full-size published structure each (a ResNet-50 or HGNetV2 at 128 px: 20-130 s apiece on 2 cores):
# command 2 trains one per training path (Deformable DETR, RT-DETR), the extended tier the other eleven.
FIVE_CLASS_COMMAND_2 = {"SenseTime/deformable-detr", "PekingU/rtdetr_r50vd"}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("hub_id", [h if h in FIVE_CLASS_COMMAND_2 else pytest.param(h, marks=pytest.mark.extended)
                                    for h in sorted(PUBLISHED)])
def test_five_classes_train_from_the_checkpoint(offline_hub, hub_id):
    torch.manual_seed(0)
    model, _ = load_model_and_processor(ModelArguments(model_name_or_path=hub_id, offline=True), FIVE)
    model.train()
    steps, lr = STEPS_AND_LR.get(hub_id, (20, 1e-4))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    side = -(-128 // size_multiple(model.config)) * size_multiple(model.config)  # what the collator pads to
    pixels = torch.rand(2, 3, side, side)
    labels = [{"class_labels": torch.tensor([1, 4]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.2, 0.3, 0.2, 0.2]])},  # noqa: E501
              {"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.6, 0.4, 0.3, 0.5]])}]
    losses = []
    for _ in range(steps):
        torch.manual_seed(1)  # the same denoising queries and group draws at every step: only the weights change
        out = model(pixel_values=pixels, labels=[dict(t) for t in labels])
        assert torch.isfinite(out.loss)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert min(losses[-3:]) < losses[0], losses


@pytest.mark.parametrize("hub_id", sorted(PUBLISHED))
def test_family_config_fine_tunes_the_cached_checkpoint_offline(offline_hub, demo_dir, tmp_path, hub_id):
    """`python scripts/train.py configs/<family>.yaml --offline --pretrained ID --train-img ...` (5 classes)."""
    from transformers import pipeline

    family = family_of(PUBLISHED[hub_id].model_type).model_type
    config = ROOT / "configs" / f"{CONFIG_OF.get(family, family)}.yaml"
    metrics = run(*parse_config([
        str(config), "--pretrained", hub_id, "--offline", "--train-img", f"{demo_dir}/train/images",
        "--train-ann", f"{demo_dir}/train/annotations.json", "--val-img", f"{demo_dir}/val/images",
        "--val-ann", f"{demo_dir}/val/annotations.json", "--output_dir", str(tmp_path / "out"),
        "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0", "--max_steps", "2",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4", "--shortest_edges", "128",
        "--eval_size", "128", "--longest_edge", "160", "--warmup_steps", "0", "--eval_strategy", "no",
        "--save_strategy", "no", "--logging_steps", "1"]))
    out = tmp_path / "out"
    assert math.isfinite(metrics["eval_loss"])
    assert json.loads((out / "eval_results.json").read_text())["eval_map"] == metrics["eval_map"]
    loaded, info = AutoModelForObjectDetection.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert loaded.config.num_labels == 5
    assert json.loads((out / "config.json").read_text())["model_type"] == PUBLISHED[hub_id].model_type
    processor = json.loads((out / "preprocessor_config.json").read_text())
    if parse_config([str(config)]).data.resize == "square":  # evaluated (and served) at 128x128
        assert processor["size"] == {"height": 128, "width": 128}, processor
    else:
        assert processor["size"] == {"shortest_edge": 128, "longest_edge": 160}, processor
    detector = pipeline("object-detection", model=str(out), threshold=0.0)
    assert detector(str(demo_dir / "val" / "images" / "000001.jpg"))


def test_a_checkpoint_that_needs_timm_says_so_when_timm_is_missing(offline_hub, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real(name, *a))
    with pytest.raises(ModelNotAvailable, match=r"needs the timm package: pip install 'timm>=1.0,<2'"):
        check_model_available(ModelArguments(model_name_or_path="SenseTime/deformable-detr", offline=True))


def _frozen(model) -> dict[str, int]:
    """Frozen backbone parameters (D-FINE's decoder keeps `reg_scale` / `up` fixed by design)."""
    keys = family_of(model.config.model_type).backbone_keys
    return {n: p.numel() for n, p in model.named_parameters() if not p.requires_grad and any(k in n for k in keys)}


# Frozen parameter counts by hand, per backbone kind, for the pretrained checkpoints of the local hub cache.
# timm ResNet-50 (published size): conv1 3*64*7*7 = 9408, layer1's convs 64*64 + 64*64*9 + 64*256 + 256*64 (downsample)
# + 2 * (256*64 + 64*64*9 + 64*256) = 212992; its BatchNorms are frozen buffers. RT-DETR r50vd (embedding 16):
# stem 3*8*9 + 8*8*9 + 8*16*9 = 1944. HGNetV2 without learnable affine blocks (D-FINE X, stem 3-8-8): stem1 3*8*9 +
# stem2a 8*4*4 + stem2b 4*8*4 + stem3 16*8*9 + stem4 8*8 = 1688. Basic-block ResNet-vd (r18vd) and the ViTs
# (LW-DETR, DINOv2 in RF-DETR) freeze nothing.
FROZEN = {"SenseTime/deformable-detr": 222400, "SenseTime/deformable-detr-with-box-refine-two-stage": 222400,
          "facebook/detr-resnet-50": 222400, "PekingU/rtdetr_r50vd": 1944, "PekingU/rtdetr_v2_r18vd": 0,
          "ustc-community/dfine-xlarge-coco": 1688, "AnnaZhang/lwdetr_small_60e_coco": 0,
          "Roboflow/rf-detr-base": 0}


@pytest.mark.parametrize("hub_id", sorted(FROZEN))
def test_backbone_freezing_follows_the_original_recipe_per_backbone_kind(offline_hub, hub_id):
    model, _ = load_model_and_processor(ModelArguments(model_name_or_path=hub_id, offline=True), FIVE)
    frozen = _frozen(model)
    assert sum(frozen.values()) == FROZEN[hub_id]
    source = AutoModelForObjectDetection.from_pretrained(hub_id)
    fixed = {n for n, p in source.named_parameters() if not p.requires_grad}
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == set(frozen) | fixed  # nothing else
    everything, _ = load_model_and_processor(
        ModelArguments(model_name_or_path=hub_id, offline=True, train_backbone_stem=True), FIVE)
    assert _frozen(everything) == {}


def test_hgnetv2_with_learnable_affine_blocks_and_swin_train_their_whole_backbone(offline_hub):
    # D-FINE S/M (HGNetV2 B0/B2, use_lab) freeze nothing; a Swin backbone in a DETR freezes nothing (DINO's Swin).
    from transformers import AutoConfig

    hgnet = AutoConfig.from_pretrained("ustc-community/dfine-xlarge-coco").to_dict()
    hgnet["backbone_config"]["use_learnable_affine_block"] = True
    swin = {"model_type": "deformable_detr", "d_model": 32, "encoder_layers": 1, "decoder_layers": 2,
            "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_feature_levels": 2,
            "backbone_config": {"model_type": "swin", "embed_dim": 16, "depths": [1, 1, 1, 1],
                                "num_heads": [1, 1, 2, 2], "out_features": ["stage3", "stage4"]}}
    for cfg in (hgnet, swin):
        args = ModelArguments(model_config=json.dumps(cfg), train_backbone_stem=False)
        model, _ = load_model_and_processor(args, FIVE)
        keys = family_of(model.config.model_type).backbone_keys
        assert any(any(k in n for k in keys) for n, _ in model.named_parameters()), cfg["model_type"]
        assert _frozen(model) == {}, cfg["model_type"]
    hgnet["backbone_config"]["use_learnable_affine_block"] = False  # HGNetV2 L/X: the stem is frozen
    model, _ = load_model_and_processor(ModelArguments(model_config=json.dumps(hgnet), train_backbone_stem=False), FIVE)
    # the stem's convolutions (1688, above) and, random weights training their norms, the stem norms' affine:
    # 2 x (8 + 4 + 8 + 8 + 8) = 72
    assert sum(_frozen(model).values()) == 1688 + 72
