"""A model built from random weights sees the image: its backbone's features carry it at every level, its decoder's
queries differ, and what the recipe changes for that (trainable norms stored as frozen ones) saves and loads cleanly."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForObjectDetection

from published import FAMILY_MODELS, family_model_config
from recipe.config.arguments import ModelArguments
from recipe.models.loading import load_model_and_processor
from recipe.models.random_init import BatchStatsNorm2d


def _random_model(name):
    torch.manual_seed(0)
    args = ModelArguments(model_config=json.dumps(family_model_config(FAMILY_MODELS[name])))
    model, processor = load_model_and_processor(args, {i: str(i) for i in range(5)})
    return model.eval(), processor


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory):
    """Two different demo scenes, normalised, 224 x 320: [2, 3, 224, 320]."""
    from recipe.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("scenes")
    make_demo_dataset(root, seed=1, num_train=2, num_val=0)
    images = [np.asarray(Image.open(p).convert("RGB").resize((320, 224)), dtype=np.float32) / 255
              for p in sorted((root / "train" / "images").iterdir())]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return torch.stack([torch.tensor((i - mean) / std, dtype=torch.float32).permute(2, 0, 1) for i in images])


def _backbone(model):
    return next(m for m in model.modules() if type(m).__name__.endswith("Backbone"))


@pytest.mark.parametrize("name", [n for n in FAMILY_MODELS if n not in ("yolos", "lw_detr", "rf_detr")])
def test_every_backbone_level_carries_the_image(name, two_scenes):
    """Eval mode, as built: feature std at each level above 1e-3 (D-FINE / DEIMv2 were 6e-12 .. 2e-18 before) and
    the two scenes' features differ. (YOLOS, LW-DETR and RF-DETR have ViT backbones without batch norms.)"""
    model, _ = _random_model(name)
    with torch.no_grad():
        maps = _backbone(model)(two_scenes).feature_maps
    for level, feature in enumerate(maps):
        assert feature.std() > 1e-3, (name, level, float(feature.std()))
        assert (feature[0] - feature[1]).abs().mean() > 1e-4, (name, level)


@pytest.mark.parametrize("name", ["detr", "conditional_detr", "dab-detr", "table-transformer"])
def test_detr_queries_start_apart(name, two_scenes):
    """At transformers' N(0, 0.02) attention weights and queries every query of a fresh DETR gives the same output
    (decoder output std over queries 1e-4 here, 0.0 for DAB-DETR); the originals' xavier transformer and N(0, 1)
    queries keep them 60x further apart (0.006 .. 0.04). Dropout off, backbone norms on batch statistics."""
    model, _ = _random_model(name)
    for norm in model.modules():
        if isinstance(norm, BatchStatsNorm2d):
            norm.train()
    with torch.no_grad():
        hidden = model.model(pixel_values=two_scenes).last_hidden_state
    assert hidden[0].std(0).mean() > 2e-3, float(hidden[0].std(0).mean())


def test_trainable_norms_save_as_frozen_ones_and_evaluate_the_same(tmp_path, two_scenes):
    model, _ = _random_model("detr")
    norms = [m for m in model.modules() if isinstance(m, BatchStatsNorm2d)]
    assert norms and not any(type(m).__name__.endswith("FrozenBatchNorm2d") for m in model.modules())
    assert all(m.weight.requires_grad for m in norms)
    model.train()
    with torch.no_grad():
        model(pixel_values=two_scenes)  # batch statistics move the running ones
    assert any(float(m.running_var.mean()) != 1.0 for m in norms)
    model.eval()
    with torch.no_grad():
        want = model(pixel_values=two_scenes).logits
    model.save_pretrained(tmp_path)
    loaded, info = AutoModelForObjectDetection.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    with torch.no_grad():
        got = loaded.eval()(pixel_values=two_scenes).logits
    assert torch.equal(got, want)  # the frozen norms' arithmetic in eval: bit for bit
