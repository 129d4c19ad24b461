"""Every family learns, proven by what it detects: each family's tiny published structure (tests/published.py, as
benchmarks/families.py builds it), from random weights, memorises 8 demo scenes and is scored on the same 8.

A falling loss is not learning: a detector whose backbone puts out nothing (D-FINE / DEIMv2 before the recipe
initialised their HGNetV2 and trained its norms) lowers its loss on position priors alone and scores 0.000 here.

Budget (the issue's overfit check): 240 px, no augmentation, batch 4, lr 1e-3 constant after 20 warm-up steps, 300
steps. Each floor is well under what the family measured here at this budget (benchmarks/RESULTS.md
"Memorisation": the table this file reproduces), so a healthy detector clears it with margin;
the lower floors are the families that learn slowly from random weights (the originals train Deformable DETR 50
epochs and DETR 500 on COCO; a 6-layer ViT without pretraining is slower still), not a looser standard: a blind
detector scores under 0.05 on every row.
"""

import json

import pytest

from conftest import DEMO
from published import FAMILY_MODELS, family_model_config
from recipe.config import parse_config
from recipe.data.synthetic import make_demo_dataset
from recipe.train import run

# family row -> map_50 floor; measured map_50 at this budget in the comment (benchmarks/RESULTS.md "Memorisation").
FLOORS = {
    "demo (deformable, box refine)": 0.8,   # 0.950
    "deformable_detr": 0.4,                 # 0.609
    "deformable_detr box refine": 0.6,      # 0.759
    "deformable_detr two-stage": 0.8,       # 0.903
    "rt_detr": 0.8,                         # 0.935
    "rt_detr_v2": 0.6,                      # 0.821
    "d_fine": 0.8,                          # 0.966
    "deimv2": 0.7,                          # 0.850
    "lw_detr": 0.5,                         # 0.731
    "rf_detr": 0.25,                        # 0.371: a zero-initialised decoder box head starts from the encoder's
                                            # proposals (tests/test_checkpoints.py); 450 steps gave 0.608 before
}
# Families that do not memorise 8 scenes at this budget, even with the originals' initialisation
# (`random_init.init_random_weights`): strict expected failures, so a change that makes one learn shows up here.
NOT_YET = {
    "dab-detr": "0.034; at the DETR width and lr 1e-4 0.011 / 0.033 after 150 / 300 steps",
    "table-transformer": "0.000",
    "yolos": "0.048 (a 6-layer ViT from random weights, lr 1e-3)",
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("memorise")
    make_demo_dataset(root, seed=3, num_train=8, num_val=1)
    return root / "train"


# DETR and Conditional DETR at their own width and learning rate. Their decoders attend globally over one stride-32
# map; at the tests' width (d_model 32, 2 heads of 16 dimensions) they do not separate their 50 queries and every
# query keeps one box (DETR: map_50 0.001 at 300 steps, 0.038 after 1500 steps at lr 1e-4 without dropout;
# Conditional DETR 0.038). At d_model 128 with 8 heads (half the published 256 / 8), 2 encoder and 4 decoder layers,
# no dropout and the originals' lr 1e-4 (facebookresearch/detr main.py, Atten4Vis/ConditionalDETR main.py), they
# memorise, slowly, as these families are known to learn (DETR's original trains 500 COCO epochs, Conditional 50-108).
# map_50 after 150 / 300 / 450 / 600 steps (one run each, evaluated every 150 steps): DETR 0.076 / 0.347 / 0.496 /
# 0.607 (0.679 / 0.767 at 750 / 900), Conditional DETR 0.116 / 0.143 / 0.514 / 0.801. The tests train 600 steps.
DETR_WIDTH = {"d_model": 128, "encoder_layers": 2, "decoder_layers": 4, "encoder_ffn_dim": 512,
              "decoder_ffn_dim": 512, "encoder_attention_heads": 8, "decoder_attention_heads": 8, "dropout": 0.0}
WIDE_FLOORS = {"detr": 0.5, "conditional_detr": 0.6}  # measured 0.607, 0.801 at 600 steps


def memorise(name: str, scenes, out, *, overrides: dict | None = None, steps: int = 300, lr: str = "1e-3") -> dict:
    """Train FAMILY_MODELS[name] (its structure updated by `overrides`) on the 8 scenes for `steps` at `lr` and
    evaluate it on them; -> the final metrics."""
    config = json.dumps({**family_model_config(FAMILY_MODELS[name]), **(overrides or {})})
    return run(*parse_config([
        DEMO, "--model_config", config, "--train-img", str(scenes / "images"),
        "--train-ann", str(scenes / "annotations.json"), "--val-img", str(scenes / "images"),
        "--val-ann", str(scenes / "annotations.json"), "--output_dir", str(out), "--dataset_cache_dir",
        str(out.parent / "cache"), "--dataloader_num_workers", "0", "--shortest_edges", "240", "--eval_size", "240",
        "--hflip_prob", "0", "--color_jitter_prob", "0", "--max_steps", str(steps), "--per_device_train_batch_size",
        "4", "--learning_rate", lr, "--warmup_steps", "20", "--lr_scheduler_type", "constant_with_warmup",
        "--logging_steps", "50", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none"]))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLOORS))
def test_each_family_memorises_eight_scenes(name, scenes, tmp_path):
    metrics = memorise(name, scenes, tmp_path / "out")
    print(f"{name}: map {metrics['eval_map']:.3f}, map_50 {metrics['eval_map_50']:.3f}")
    assert metrics["eval_map_50"] >= FLOORS[name], metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    strict=True, reason=f"does not memorise 8 scenes in 300 steps yet (map_50 {v})")) for n, v in NOT_YET.items()])
def test_families_that_do_not_memorise_yet(name, scenes, tmp_path):
    metrics = memorise(name, scenes, tmp_path / "out")
    print(f"{name}: map {metrics['eval_map']:.3f}, map_50 {metrics['eval_map_50']:.3f}")
    assert metrics["eval_map_50"] >= 0.5, metrics


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WIDE_FLOORS))
def test_detr_memorises_at_its_own_width_and_learning_rate(name, scenes, tmp_path):
    metrics = memorise(name, scenes, tmp_path / "out", overrides=DETR_WIDTH, steps=600, lr="1e-4")
    print(f"{name} (d_model 128, lr 1e-4, 600 steps): map {metrics['eval_map']:.3f}, "
          f"map_50 {metrics['eval_map_50']:.3f}")
    assert metrics["eval_map_50"] >= WIDE_FLOORS[name], metrics
