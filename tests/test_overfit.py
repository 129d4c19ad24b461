"""The recipe can learn: a tiny model memorises 8 synthetic images (map_50 >= 0.5 on those images)."""

import pytest

from conftest import ROOT
from recipe.config import parse_config
from recipe.data.synthetic import make_demo_dataset
from recipe.train import run


@pytest.mark.slow
def test_tiny_model_overfits_eight_images(tmp_path):
    make_demo_dataset(tmp_path / "d", seed=3, num_train=8, num_val=1)
    split = tmp_path / "d" / "train"
    metrics = run(*parse_config([
        str(ROOT / "configs" / "demo.yaml"), "--train-img", str(split / "images"),
        "--train-ann", str(split / "annotations.json"), "--val-img", str(split / "images"),
        "--val-ann", str(split / "annotations.json"), "--output_dir", str(tmp_path / "out"),
        "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
        "--shortest_edges", "240", "--eval_size", "240", "--hflip_prob", "0", "--color_jitter_prob", "0",
        "--max_steps", "300", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
        "--warmup_steps", "20", "--lr_scheduler_type", "constant_with_warmup", "--logging_steps", "50"]))
    assert metrics["eval_map_50"] >= 0.5, metrics
