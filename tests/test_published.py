"""Published checkpoints load offline from the local Hub cache exactly as a user's cache would serve them.

The cache (tests/published.py) reproduces each repository's config.json / preprocessor_config.json and its weight
file's key names and head sharing; weights are random and widths shrunk. What transformers 5.24 does with them
is asserted as it is today, so a library upgrade that changes it fails here first.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from published import PUBLISHED, hub_cache, offline_hub  # noqa: F401  (fixtures, until conftest imports them)

IDS = list(PUBLISHED)

# hub id -> (config class, image processor class, model class), as the Auto classes resolve them.
CLASSES = {
    "SenseTime/deformable-detr": (
        "DeformableDetrConfig",
        "DeformableDetrImageProcessor",
        "DeformableDetrForObjectDetection",
    ),
    "SenseTime/deformable-detr-with-box-refine": (
        "DeformableDetrConfig",
        "DeformableDetrImageProcessor",
        "DeformableDetrForObjectDetection",
    ),
    "SenseTime/deformable-detr-with-box-refine-two-stage": (
        "DeformableDetrConfig",
        "DeformableDetrImageProcessor",
        "DeformableDetrForObjectDetection",
    ),
    "facebook/detr-resnet-50": ("DetrConfig", "DetrImageProcessor", "DetrForObjectDetection"),
    "microsoft/conditional-detr-resnet-50": (
        "ConditionalDetrConfig",
        "ConditionalDetrImageProcessor",
        "ConditionalDetrForObjectDetection",
    ),
    "IDEA-Research/dab-detr-resnet-50": ("DabDetrConfig", "ConditionalDetrImageProcessor", "DabDetrForObjectDetection"),
    "microsoft/table-transformer-detection": (
        "TableTransformerConfig",
        "DetrImageProcessor",
        "TableTransformerForObjectDetection",
    ),
    "hustvl/yolos-small": ("YolosConfig", "YolosImageProcessor", "YolosForObjectDetection"),
    "PekingU/rtdetr_r50vd": ("RTDetrConfig", "RTDetrImageProcessor", "RTDetrForObjectDetection"),
    "PekingU/rtdetr_v2_r18vd": ("RTDetrV2Config", "RTDetrImageProcessor", "RTDetrV2ForObjectDetection"),
    "ustc-community/dfine-xlarge-coco": ("DFineConfig", "RTDetrImageProcessor", "DFineForObjectDetection"),
    "Intellindust/DEIMv2_HGNetv2_N_COCO": ("Deimv2Config", "RTDetrImageProcessor", "Deimv2ForObjectDetection"),
    "AnnaZhang/lwdetr_small_60e_coco": ("LwDetrConfig", "DeformableDetrImageProcessor", "LwDetrForObjectDetection"),
    "Roboflow/rf-detr-base": ("RfDetrConfig", "RfDetrImageProcessor", "RfDetrForObjectDetection"),
}
# Families whose logits carry an extra "no object" column (softmax heads); the others are sigmoid heads.
NO_OBJECT_COLUMN = {"detr", "table-transformer", "yolos"}
BACKBONE = {  # what the published config builds
    "deformable_detr": "TimmBackboneConfig",
    "detr": "TimmBackboneConfig",
    "conditional_detr": "TimmBackboneConfig",
    "dab-detr": "TimmBackboneConfig",
    "table-transformer": "TimmBackboneConfig",
    "yolos": None,
    "rt_detr": "RTDetrResNetConfig",
    "rt_detr_v2": "RTDetrResNetConfig",
    "d_fine": "HGNetV2Config",
    "deimv2": "HGNetV2Config",
    "lw_detr": "LwDetrViTConfig",
    "rf_detr": "RfDetrDinov2Config",
}
_RTDETR_LOSSES = {f"loss_{t}{s}" for t in ("vfl", "bbox", "giou") for s in ("", "_aux_0", "_aux_1", "_dn_0", "_dn_1")}
_DFINE_LOSSES = _RTDETR_LOSSES | {f"loss_{t}_{s}" for t in ("fgl", "ddf") for s in ("aux_0", "dn_0", "dn_1")}
_DETR_LOSSES = {"loss_ce", "loss_bbox", "loss_giou", "cardinality_error"}
_GROUP_LOSSES = {
    f"{t}{s}" for t in ("loss_ce", "loss_bbox", "loss_giou", "cardinality_error") for s in ("", "_0", "_enc")
}
# Keys of outputs.loss_dict in training mode with the shrunk configs (2 decoder layers; auxiliary_loss as published).
LOSS_KEYS = {
    "deformable_detr": _DETR_LOSSES,
    "detr": _DETR_LOSSES,
    "conditional_detr": _DETR_LOSSES,
    "dab-detr": _DETR_LOSSES,
    "table-transformer": _DETR_LOSSES,
    "yolos": _DETR_LOSSES,
    "rt_detr": _RTDETR_LOSSES,
    "rt_detr_v2": _RTDETR_LOSSES,
    "d_fine": _DFINE_LOSSES,
    "deimv2": {key.replace("vfl", "mal") for key in _DFINE_LOSSES},
    "lw_detr": _GROUP_LOSSES,
    "rf_detr": _GROUP_LOSSES,
}
# from_pretrained(num_labels=5, ignore_mismatched_sizes=True) in transformers 5.24: it raises
# `NotImplementedError: aten::equal ... Meta tensors` (tie_weights comparing a re-initialised meta head with a
# loaded one) exactly when the weight file holds more than one Deformable DETR class head: the .bin of any
# variant (4.x kept every tied copy) and the box-refine safetensors (4.x cloned the heads). Everything else loads.
CRASHES_WITH_NEW_CLASSES = {
    ("SenseTime/deformable-detr", "pytorch_model.bin"),
    ("SenseTime/deformable-detr-with-box-refine", "model.safetensors"),
}
# ... and where the top-level `class_embed` is tied to `model.decoder.class_embed` (two-stage Deformable DETR,
# RT-DETR v2, D-FINE, DEIMv2) it "loads" but leaves every class head on the meta device: forward then fails with
# "Tensor on device meta is not on the expected device cpu!".
_TWO_HEADS, _THREE_HEADS = ["class_embed.0", "class_embed.1"], ["class_embed.0", "class_embed.1", "class_embed.2"]
META_AFTER_NEW_CLASSES = {
    "SenseTime/deformable-detr-with-box-refine-two-stage": _THREE_HEADS + [f"model.decoder.{h}" for h in _THREE_HEADS],
    **{
        hub_id: _TWO_HEADS + [f"model.decoder.{h}" for h in _TWO_HEADS]
        for hub_id in (
            "PekingU/rtdetr_v2_r18vd",
            "ustc-community/dfine-xlarge-coco",
            "Intellindust/DEIMv2_HGNetv2_N_COCO",
        )
    },
}


def _weight_files(hub_id: str) -> list[str]:
    entry = PUBLISHED[hub_id]
    return [entry.weights] + (["pytorch_model.bin"] if entry.also_bin and entry.weights != "pytorch_model.bin" else [])


def _image_side(model_type: str) -> int:
    # Deformable DETR's stride-64 level must be >= 2 x 2 (GroupNorm in training); RF-DETR needs a multiple of
    # patch 14 x 4 windows; 64 px elsewhere keeps the full-size timm ResNet-50s cheap.
    return {"deformable_detr": 128, "rf_detr": 112}.get(model_type, 64)


def _snapshot(home, hub_id: str):
    from huggingface_hub import snapshot_download

    return snapshot_download(hub_id, cache_dir=home / "hub", local_files_only=True)


@pytest.mark.parametrize("hub_id", IDS)
def test_config_and_processor_resolve_offline(offline_hub, hub_id):  # noqa: F811 (pytest fixture)
    from transformers import AutoConfig, AutoImageProcessor

    entry = PUBLISHED[hub_id]
    config = AutoConfig.from_pretrained(hub_id)
    processor = AutoImageProcessor.from_pretrained(hub_id)
    assert (type(config).__name__, type(processor).__name__) == CLASSES[hub_id][:2]
    assert config.model_type == entry.model_type
    assert config.id2label == {int(k): v for k, v in entry.labels.items()}
    backbone = getattr(config, "backbone_config", None)
    assert (type(backbone).__name__ if backbone is not None else None) == BACKBONE[entry.model_type]
    if BACKBONE[entry.model_type] == "TimmBackboneConfig":  # `"use_timm_backbone": true, "backbone": ...` honoured
        assert backbone.backbone == entry.config["backbone"]
    for flag in ("with_box_refine", "two_stage", "auxiliary_loss"):
        if flag in entry.config:
            assert getattr(config, flag) == entry.config[flag], flag


@pytest.mark.parametrize(("hub_id", "weights"), [(h, w) for h in IDS for w in _weight_files(h)])
def test_model_loads_every_saved_tensor(offline_hub, hub_id, weights):  # noqa: F811 (pytest fixture)
    from transformers import AutoModelForObjectDetection
    from transformers.core_model_loading import revert_weight_conversion

    model, info = AutoModelForObjectDetection.from_pretrained(
        hub_id, output_loading_info=True, use_safetensors=weights == "model.safetensors"
    )
    assert type(model).__name__ == CLASSES[hub_id][2]
    assert {key: list(value) for key, value in info.items() if value} == {}
    path = f"{_snapshot(offline_hub, hub_id)}/{weights}"
    saved = load_file(path) if weights == "model.safetensors" else torch.load(path, weights_only=True)
    live = revert_weight_conversion(model, dict(model.state_dict()))  # live tensors under the file's key names
    assert set(saved) <= set(live)
    for name, tensor in saved.items():
        assert torch.equal(live[name], tensor), name


@pytest.mark.parametrize("hub_id", IDS)
def test_forward_shapes(offline_hub, hub_id):  # noqa: F811 (pytest fixture)
    from transformers import AutoModelForObjectDetection

    model = AutoModelForObjectDetection.from_pretrained(hub_id).eval()
    config, side = model.config, _image_side(model.config.model_type)
    with torch.no_grad():
        outputs = model(pixel_values=torch.rand(1, 3, side, side))
    queries = getattr(config, "num_detection_tokens", None) or config.num_queries
    classes = config.num_labels + (config.model_type in NO_OBJECT_COLUMN)
    assert tuple(outputs.logits.shape) == (1, queries, classes)
    assert tuple(outputs.pred_boxes.shape) == (1, queries, 4)  # cxcywh_norm


@pytest.mark.parametrize("hub_id", IDS)
def test_training_forward_loss_terms(offline_hub, hub_id):  # noqa: F811 (pytest fixture)
    from transformers import AutoModelForObjectDetection

    torch.manual_seed(0)
    model = AutoModelForObjectDetection.from_pretrained(hub_id).train()
    side = _image_side(model.config.model_type)
    labels = [
        {"class_labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.2]])}
    ]
    outputs = model(pixel_values=torch.rand(1, 3, side, side), labels=labels)
    assert set(outputs.loss_dict) == LOSS_KEYS[model.config.model_type]
    assert torch.isfinite(outputs.loss)


@pytest.mark.parametrize(("hub_id", "weights"), [(h, w) for h in IDS for w in _weight_files(h)])
def test_new_class_count_current_behaviour(offline_hub, hub_id, weights):  # noqa: F811 (pytest fixture)
    """Documents transformers 5.24: the recipe (recipe/models/loading.py) must work around the listed crashes."""
    from transformers import AutoModelForObjectDetection

    kwargs = {"num_labels": 5, "ignore_mismatched_sizes": True, "use_safetensors": weights == "model.safetensors"}
    if (hub_id, weights) in CRASHES_WITH_NEW_CLASSES:
        with pytest.raises(NotImplementedError, match="aten::equal"):
            AutoModelForObjectDetection.from_pretrained(hub_id, **kwargs)
        return
    model, info = AutoModelForObjectDetection.from_pretrained(hub_id, output_loading_info=True, **kwargs)
    # Only class-count-shaped tensors are re-initialised: dim 0 is num_labels (+1 for no-object/denoising rows).
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    mismatched = {entry[0]: (tuple(entry[1]), tuple(entry[2])) for entry in info["mismatched_keys"]}
    assert mismatched, "a new class count must re-initialise the class heads"
    old = PUBLISHED[hub_id].config.get("num_labels", len(PUBLISHED[hub_id].labels))
    for name, (before, after) in mismatched.items():
        assert (before[0] - after[0]) == (old - 5) and before[1:] == after[1:], name
    on_meta = sorted(
        {name.rsplit(".", 1)[0] for name, p in model.named_parameters(remove_duplicate=False) if p.is_meta}
    )
    assert on_meta == sorted(META_AFTER_NEW_CLASSES.get(hub_id, []))
    if on_meta:
        return
    side = _image_side(model.config.model_type)
    with torch.no_grad():
        logits = model.eval()(pixel_values=torch.rand(1, 3, side, side)).logits
    assert logits.shape[-1] == 5 + (model.config.model_type in NO_OBJECT_COLUMN)
