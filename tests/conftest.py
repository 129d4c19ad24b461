"""Shared fixtures. Tests are offline, tiny and seeded; data from ../shared/data is skipped when absent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECIPE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (real test data lives in ../shared/data beside the checkout)")
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests must never reach the Hub: the machines that run them have no network beyond PyPI.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small synthetic demo dataset (seeded), shared by the tests that train."""
    from recipe.data.synthetic import make_demo_dataset

    out = tmp_path_factory.mktemp("demo")
    make_demo_dataset(out, seed=0, num_train=24, num_val=8)
    return out


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


DEMO = str(ROOT / "configs" / "demo.yaml")


def demo_args(demo_dir, tmp_path, *extra):
    """configs/demo.yaml on the `demo_dir` data, small images, no workers: `run(*demo_args(...))`."""
    from recipe.config import parse_config

    return parse_config([DEMO, "--train-img", f"{demo_dir}/train/images", "--train-ann",
                         f"{demo_dir}/train/annotations.json", "--val-img", f"{demo_dir}/val/images",
                         "--val-ann", f"{demo_dir}/val/annotations.json", "--output_dir", str(tmp_path / "out"),
                         "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
                         "--shortest_edges", "128", "--eval_size", "128", "--logging_steps", "1", *extra])


def tiny_model_args(**overrides):
    """ModelArguments for the demo's tiny model config, from configs/demo.yaml."""
    import yaml

    from recipe.config import ModelArguments

    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["model_config"]
    return ModelArguments(model_config=json.dumps(cfg), **overrides)


from published import hub_cache, offline_hub  # noqa: E402,F401  (the local hub cache of published checkpoints)
