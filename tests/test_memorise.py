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
    "detr": "0.001; 0.038 after 1500 steps at lr 1e-4 without dropout",
    "conditional_detr": "0.038",
    "dab-detr": "0.034",
    "table-transformer": "0.000",
    "yolos": "0.048 (a 6-layer ViT from random weights, lr 1e-3)",
}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("memorise")
    make_demo_dataset(root, seed=3, num_train=8, num_val=1)
    return root / "train"


def memorise(name: str, scenes, out) -> dict:
    """Train FAMILY_MODELS[name] on the 8 scenes and evaluate it on them; -> the final metrics."""
    config = json.dumps(family_model_config(FAMILY_MODELS[name]))
    return run(*parse_config([
        DEMO, "--model_config", config, "--train-img", str(scenes / "images"),
        "--train-ann", str(scenes / "annotations.json"), "--val-img", str(scenes / "images"),
        "--val-ann", str(scenes / "annotations.json"), "--output_dir", str(out), "--dataset_cache_dir",
        str(out.parent / "cache"), "--dataloader_num_workers", "0", "--shortest_edges", "240", "--eval_size", "240",
        "--hflip_prob", "0", "--color_jitter_prob", "0", "--max_steps", "300", "--per_device_train_batch_size", "4",
        "--learning_rate", "1e-3", "--warmup_steps", "20", "--lr_scheduler_type", "constant_with_warmup",
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
