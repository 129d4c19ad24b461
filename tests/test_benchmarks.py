"""The benchmarks still run (tiny inputs): they live outside the package, so nothing else would notice."""

import argparse
import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def _fake_bccd(root, count=12):
    """BCCD's layout (JPEGImages + VOC Annotations) with small random JPEGs."""
    rng = np.random.default_rng(0)
    (root / "BCCD" / "JPEGImages").mkdir(parents=True)
    (root / "BCCD" / "Annotations").mkdir()
    for i in range(count):
        name = f"BloodImage_{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(root / "BCCD" / "JPEGImages" / name)
        objects = "".join(f"<object><name>{c}</name><bndbox><xmin>{5 + 20 * k}</xmin><ymin>6</ymin>"
                          f"<xmax>{30 + 20 * k}</xmax><ymax>40</ymax></bndbox></object>"
                          for k, c in enumerate(["RBC", "WBC", "Platelets"]))
        (root / "BCCD" / "Annotations" / f"{name[:-4]}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>128</width><height>96</height></size>"
            f"{objects}</annotation>")


def test_dataloader_benchmark_runs(tmp_path, capsys):
    bench = _load("dataloader")
    _fake_bccd(tmp_path)
    args = argparse.Namespace(bccd=tmp_path, workers=[0], rounds=1, batch_size=4, shortest_edges=[64, 80],
                              longest_edge=120, processor="DeformableDetrImageProcessor")
    out = bench.run(args)
    medians = out["results"][0]
    assert set(medians) == {"recipe", "hf_example", "decode_torchvision", "decode_opencv", "decode_pil"}
    assert all(v > 0 for v in medians.values())
    assert set(out["stages"]) == {"decode", "augment", "labels", "collate"}
    bench.report(out)
    assert "recipe/hf_example=" in capsys.readouterr().out


def test_bccd_to_coco_boxes_are_inclusive(tmp_path):
    _fake_bccd(tmp_path, count=1)
    coco = json.loads(_load("dataloader").bccd_to_coco(tmp_path / "BCCD", tmp_path / "b.json").read_text())
    assert coco["annotations"][0]["bbox"] == [4.0, 5.0, 26.0, 35.0]  # VOC 5..30 x 6..40, 1-based inclusive
    assert [c["name"] for c in coco["categories"]] == ["RBC", "WBC", "Platelets"]


def test_bdd_label_writer(tmp_path):
    boxes = _load("dataset_scale").write_bdd_label_file(str(tmp_path / "l.json"), 5, image_dir=str(tmp_path / "i"))
    frames = json.loads((tmp_path / "l.json").read_text())
    assert len(frames) == 5 and boxes == sum(len(f["labels"] or []) for f in frames)
    assert len(list((tmp_path / "i").iterdir())) == 5


@pytest.mark.parametrize("name", ["metrics", "eval_memory"])
def test_other_benchmarks_import(name):
    assert _load(name).__doc__


def test_families_benchmark_models_build_without_timm_with_the_demo_queries():
    from transformers import AutoConfig, AutoModelForObjectDetection

    families = _load("families")
    built = set()
    for name, hub_id in families.MODELS.items():
        cfg = families.model_config(hub_id)
        config = AutoConfig.for_model(**cfg)
        assert not getattr(config, "use_timm_backbone", False), name
        queries = config.num_detection_tokens if cfg["model_type"] == "yolos" else config.num_queries
        assert queries == 50, name
        built.add(AutoModelForObjectDetection.from_config(config).config.model_type)
    from recipe.families import FAMILIES

    assert built == set(FAMILIES)  # every family the recipe supports has a row
