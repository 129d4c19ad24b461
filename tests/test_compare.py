"""detr-compare (recipe/tools/compare.py): its arguments, and a comparison on the demo whose rows are each family's own
`detr-evaluate --model` figures and exported graph, resumed with the families left."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from conftest import ROOT
from recipe.config.compare_plan import as_flags, parse_budget, parse_compare, split_flags
from recipe.core.errors import ConfigError


def test_budget_flags_and_the_split_of_compares_own_flags_from_trainings():
    assert [parse_budget(b) for b in ("90s", "30m", "2h", "45", None)] == [90, 1800, 7200, 45, None]
    for bad in ("30 minutes", "0m", "-5s"):
        with pytest.raises(ConfigError, match="90s, 30m or 2h"):
            parse_budget(bad)
    own = {"families", "budget"}
    assert split_flags(["--families", "a", "b", "--max_steps", "5", "--budget=3m", "--seed", "1"], own) == (
        ["--families", "a", "b", "--budget=3m"], ["--max_steps", "5", "--seed", "1"])
    with pytest.raises(ConfigError, match="a value without its --flag"):
        split_flags(["stray", "--families", "a"], own)
    assert as_flags("model_config", {"model_type": "d_fine"}) == ["--model_config", '{"model_type": "d_fine"}']
    assert as_flags("shortest_edges", [208, 224]) == ["--shortest_edges", "208", "224"]
    assert as_flags("use_ema", False) == ["--use_ema", "false"]


def test_a_plan_gives_families_overrides_and_training_flags_the_command_line_wins(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"budget": "3m", "families": {"rt_detr": {"learning_rate": 5e-4},
                                                                  "mine": {"config": str(ROOT / "configs/demo.yaml")}},
                                    "training": {"max_steps": 7, "seed": 3}}, sort_keys=False))
    args, families, training = parse_compare([str(plan), "--budget", "1m", "--seed", "4"])
    assert args.budget == "1m" and list(families) == ["rt_detr", "mine"]
    assert families["rt_detr"] == {"config": str(ROOT / "configs" / "rt_detr.yaml"),
                                   "overrides": {"learning_rate": 5e-4}}
    assert families["mine"]["config"] == str(ROOT / "configs" / "demo.yaml")
    assert training == ["--max_steps", "7", "--seed", "3", "--seed", "4"]  # the last --seed wins
    args, families, _ = parse_compare([str(plan), "--families", "d_fine", "rt_detr", "deformable_detr"])
    assert list(families) == ["d_fine", "rt_detr", "deformable_detr"]
    assert families["rt_detr"]["overrides"] == {"learning_rate": 5e-4}
    assert families["deformable_detr"]["config"] == str(ROOT / "configs" / "deformable_detr_coco.yaml")


@pytest.mark.parametrize(("argv", "message"), [
    (["--families", "no_such_family"], "family 'no_such_family': no such config file or name"),
    ([], "no families to compare"),
    (["--families", "d_fine", "--latency_images", "0"], "latency_images"),
])
def test_bad_arguments_are_one_line_before_anything_runs(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_compare(argv)


def test_a_bad_training_flag_fails_for_every_family_before_the_first_trains(tmp_path):
    from recipe.tools.compare import compare

    args, families, training = parse_compare(["--families", "demo", "d_fine", "--output_dir", str(tmp_path / "c"),
                                              "--learning_rate", "-1"])
    with pytest.raises(ConfigError, match="learning_rate"):
        compare(args, families, training)
    assert not (tmp_path / "c").exists()


def test_unknown_plan_keys_are_errors(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("families: [d_fine]\nbudgte: 3m\n")
    with pytest.raises(ConfigError, match="unknown key.*budgte"):
        parse_compare([str(plan)])


def test_the_demo_plan_parses_for_each_family():
    from recipe.config.compare_plan import family_argv
    from recipe.config.load import parse_config

    args, families, training = parse_compare([str(ROOT / "configs" / "compare" / "demo_cpu.yaml")])
    assert list(families) == ["deformable_detr", "rt_detr", "d_fine"] and args.budget == "3m"
    types = {}
    for name, spec in families.items():
        config = parse_config(family_argv(spec, training, ROOT / "outputs" / "unused" / name))
        types[name] = (json.loads(config.model.model_config)["model_type"], config.data.augmentation,
                       config.data.resize, config.training.learning_rate, config.data.train_img)
    assert types == {"deformable_detr": ("deformable_detr", "deformable", "shortest_edge", 1e-3,
                                         "data/demo/train/images"),
                     "rt_detr": ("rt_detr", "rtdetr", "square", 1e-3, "data/demo/train/images"),
                     "d_fine": ("d_fine", "rtdetr", "square", 1e-3, "data/demo/train/images")}


# Families whose graphs reproduce PyTorch after a few steps from random weights (RT-DETR's query selection ties on
# such weights: tests/test_export.py), at the tests' widths.
FAMILIES = ("demo", "d_fine", "lw_detr")


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.timeout(600)
def test_compare_on_the_demo_ranks_families_by_their_own_evaluation_and_resumes(demo_dir, tmp_path, capsys):
    from published import FAMILY_MODELS, family_model_config
    from recipe.cli.main import compare_main, evaluate_main

    plan = {"families": {name: ({"config": str(ROOT / "configs" / "demo.yaml")} if name == "demo" else
                                {"model_config": family_model_config(FAMILY_MODELS[name])}) for name in FAMILIES},
            "training": {"train_img": f"{demo_dir}/train/images", "train_ann": f"{demo_dir}/train/annotations.json",
                         "val_img": f"{demo_dir}/val/images", "val_ann": f"{demo_dir}/val/annotations.json",
                         "shortest_edges": [128], "eval_size": 128, "longest_edge": 160, "max_steps": 12,
                         "learning_rate": 1e-3, "warmup_steps": 2, "use_ema": False, "no_aug_epochs": 0,
                         "per_device_train_batch_size": 4, "dataloader_num_workers": 0, "eval_strategy": "no",
                         "save_strategy": "no", "report_to": "none", "dataset_cache_dir": str(tmp_path / "cache")},
            "latency_images": 3}
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    out = tmp_path / "compare"
    compare_main([str(plan_file), "--families", *FAMILIES[:2], "--output_dir", str(out)])
    first = {r["family"]: r for r in json.loads((out / "leaderboard.json").read_text())}
    assert sorted(first) == sorted(FAMILIES[:2])
    stamps = {name: os.stat(out / name / "model.safetensors").st_mtime_ns for name in first}
    compare_main([str(plan_file), "--output_dir", str(out)])  # the plan's three: two done, one left
    rows = json.loads((out / "leaderboard.json").read_text())
    assert [r["map"] for r in rows] == sorted((r["map"] for r in rows), reverse=True)
    by_family = {r["family"]: r for r in rows}
    assert sorted(by_family) == sorted(FAMILIES)
    assert {name: os.stat(out / name / "model.safetensors").st_mtime_ns for name in first} == stamps
    assert all(by_family[name] == first[name] for name in first)  # not trained again
    printed = capsys.readouterr().out
    assert "| family | model_type | map |" in printed and (out / "leaderboard.png").stat().st_size > 0
    for name, row in by_family.items():
        folder = out / name
        assert row["steps"] == 12 and row["parameters"] > 0 and row["model_type"] == json.loads(
            (folder / "config.json").read_text())["model_type"]
        own = tmp_path / f"{name}-evaluate.json"
        evaluate_main(["--model", str(folder), "--images", f"{demo_dir}/val/images", "--ann",
                       f"{demo_dir}/val/annotations.json", "--output", str(own), "--dataset_cache_dir",
                       str(tmp_path / "cache"), "--num-workers", "0"])
        metrics = json.loads(own.read_text())
        assert {k: row[k] for k in ("map", "map_50", "map_small")} == {
            k: round(metrics[k], 4) for k in ("map", "map_50", "map_small")}
        assert json.loads((folder / "compare_eval.json").read_text()) == metrics
        assert row["onnx"] == str(folder / "model.onnx") and row["latency_ms"] > 0 and row["export_error"] is None
        assert row["frame"] == json.loads((folder / "model.onnx.json").read_text())["frame"]
        graph = tmp_path / f"{name}-onnx.json"
        evaluate_main(["--model", row["onnx"], "--images", f"{demo_dir}/val/images", "--ann",
                       f"{demo_dir}/val/annotations.json", "--output", str(graph), "--dataset_cache_dir",
                       str(tmp_path / "cache"), "--num-workers", "0"])
        assert json.loads(graph.read_text())["map"] == pytest.approx(metrics["map"], abs=1e-4)


def test_parameters_are_counted_from_the_saved_weights(tmp_path):
    import torch
    from safetensors.torch import save_file

    from recipe.tools.compare import count_parameters

    weights = {"a": torch.zeros(3, 4), "b": torch.zeros(5), "c": torch.zeros(2, 2, 2)}
    save_file(weights, str(tmp_path / "model.safetensors"))
    assert count_parameters(tmp_path) == 12 + 5 + 8


def test_the_leaderboard_ranks_by_map_and_lists_a_family_without_a_graph(tmp_path):
    from recipe.tools.compare import write_leaderboard

    row = {"model_type": "x", "map_50": 0.5, "map_small": 0.1, "train_s": 10.0, "steps": 5, "parameters": 2_000_000,
           "latency_threads": 1}
    rows = write_leaderboard(tmp_path, [
        {**row, "family": "a", "map": 0.2, "latency_ms": 3.0, "export_error": None},
        {**row, "family": "b", "map": 0.3, "latency_ms": None, "export_error": "no parity"}])
    assert [r["family"] for r in rows] == ["b", "a"]
    assert json.loads((tmp_path / "leaderboard.json").read_text()) == rows
    table = (tmp_path / "leaderboard.md").read_text()
    assert "| b | x | 0.3000 | 0.5000 | 0.1000 | 10 | 5 | 2.00M | - |" in table
    assert "b: not exported (no parity)" in table
    assert (tmp_path / "leaderboard.png").stat().st_size > 0
