"""The benchmarks still run (tiny inputs): they live outside the package, so nothing else would notice."""

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

# Each benchmark's figure lines, as its --smoke run prints them (the same code prints the real run's).
SMOKE_FIGURES = {
    "small_data": [r"^schedule +demo +auto deformable +seeds 1: map [\d.]+",
                   r"^bdd threshold 0\.3: \d+ images per epoch",
                   r"^rare +demo-imbalanced +threshold 0\.3 +seeds 1: pedestrian_ap [\d.]+, others_mean_ap [\d.]+"],
    "augmentation_presets": [r"^rt_detr +rtdetr +1 +[\d.]+ +[\d.]+", r"^deim +mixing +[\d.]+$",
                             r"^rfdetr +all +[\d.]+$"],
    "deploy": [r"^\| model \(deformable_detr\) \| pytorch eager( \| [\d.]+){5} \| 1\.00x \|$",
               r"^\| model \(deformable_detr\) \| openvino int8( \| [\d.]+){5} \| [\d.]+x \|$"],
    "dataloader": [r"workers=1 recipe/hf_example=\d", r"recipe ms per image \(0 workers\): decode="],
    "dataset_scale": [r"^build_s=\d", r"^build_peak_rss_mb=\d", r"^reload_s=\d"],
    "eval_memory": [r"^recipe_kb_per_image=-?\d", r"^trainer_default_kb_per_image=-?\d", r"^ratio=-?\d"],
    "eval_throughput": [r"^evaluate: 4 images, [\d.]+ images/s", r"^predict post\+scoring = [\d.]+%"],
    "export_speed": [r"^demo +64x64 +2 +[\d.]+ +[\d.]+ +[\d.]+x$"],
    "families": [r"^demo \(deformable, box refine\) +1 +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+$"],
    "format_scale": [r"^voc_build_s=\d", r"^yolo_reload_s=\d"],
    "metrics": [r"^pycocotools_s=\d", r"^faster_coco_eval_s=\d", r"^max_metric_diff=", r"^speedup=\d"],
    "tiling": [r"^untiled +map [\d.]+ map_50 [\d.]+ map_small [\d.]+ +s/image [\d.]+$",
               r"^tile 320 nms \+full +map [\d.]+ map_50 [\d.]+ map_small [\d.]+ +s/image [\d.]+$",
               r"^tile 320 wbf \+full +map [\d.]+", r"^tile 320 nms tiles only +map [\d.]+"],
    "recipe_vs_defaults": [r"^ +recipe: map=[\d.]+ map_50=", r"^map ratio recipe/transformers_knobs = "],
    # Which path each arm took (the CPU run's own cv2 loader, or the batch step in torch that a GPU run takes).
    "training_features": [r"^ema \+ no_aug_epochs 2 +2 ", r"% of a step$",
                          r'^\{"arm": "baseline", .*"batch_step_in_torch": false\}$',
                          r'^\{"arm": "batch step in torch", .*"batch_step_in_torch": true\}$'],
}
# Smoke runs past ~30 s of CPU (measured on the 2-core machine, user + sys of the run and its children):
# augmentation_presets (two trainings and the loader of four presets, 22 s of CPU, 31 s beside other work), eval_memory
# (four child processes, each loading torch and a model), deploy (a 1-step training and the two INT8 exports),
# export_speed (an ONNX export, 39 s), recipe_vs_defaults
# (three trainings, 31 s), training_features (six short trainings). The others took 1 to 27 s.
SLOW_SMOKE = {"augmentation_presets", "deploy", "eval_memory", "export_speed", "recipe_vs_defaults", "small_data",
              "training_features"}


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_dataloader_benchmark_runs(tmp_path, capsys):
    bench = _load("dataloader")
    bench.fake_bccd(tmp_path)
    args = argparse.Namespace(bccd=tmp_path, workers=[0, 1], rounds=1, batch_size=4, shortest_edges=[64, 80],
                              longest_edge=120, processor="DeformableDetrImageProcessor")
    out = bench.run(args)
    for medians in out["results"].values():
        assert set(medians) == {"recipe", "recipe_parquet", "recipe_cpu_norm", "recipe_fresh_shm", "hf_example",
                                "decode_torchvision",
                                "decode_opencv", "decode_pil", "decode_and_ship"}
        assert all(v > 0 for v in medians.values())
    assert set(out["stages"]) == {"decode", "augment", "labels", "collate", bench.DEVICE_STAGE}
    bench.report(out)
    printed = capsys.readouterr().out
    assert "workers=1 recipe/hf_example=" in printed and "reused buffers" in printed
    assert "% of recipe on files" in printed


def test_every_benchmark_has_a_smoke_run():
    assert sorted(SMOKE_FIGURES) == sorted(p.stem for p in (ROOT / "benchmarks").glob("[!_]*.py"))


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow, pytest.mark.timeout(300)])
                                  if n in SLOW_SMOKE else n
                                  for n in sorted(SMOKE_FIGURES)])
def test_benchmark_smoke_run(name, tmp_path):
    """`python benchmarks/NAME.py --smoke` as a user types it (a fresh process from another folder: a broken import,
    a renamed recipe function or a figure that no longer prints fails here), exit code 0 and its figure lines."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--smoke"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    missing = [p for p in SMOKE_FIGURES[name] if not re.search(p, proc.stdout, re.MULTILINE)]
    assert not missing, f"{missing} not printed:\n{proc.stdout[-3000:]}"
    assert "failed:" not in proc.stdout


def test_bccd_to_coco_boxes_are_inclusive(tmp_path):
    bench = _load("dataloader")
    bench.fake_bccd(tmp_path, count=1)
    coco = json.loads(bench.bccd_to_coco(tmp_path / "BCCD", tmp_path / "b.json").read_text())
    assert coco["annotations"][0]["bbox"] == [4.0, 5.0, 26.0, 35.0]  # VOC 5..30 x 6..40, 1-based inclusive
    assert [c["name"] for c in coco["categories"]] == ["RBC", "WBC", "Platelets"]


def test_bdd_label_writer(tmp_path):
    boxes = _load("dataset_scale").write_bdd_label_file(str(tmp_path / "l.json"), 5, image_dir=str(tmp_path / "i"))
    frames = json.loads((tmp_path / "l.json").read_text())
    assert len(frames) == 5 and boxes == sum(len(f["labels"] or []) for f in frames)
    assert len(list((tmp_path / "i").iterdir())) == 5


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
    from recipe.models.families import FAMILIES

    assert built == set(FAMILIES)  # every family the recipe supports has a row


def test_recipe_vs_defaults_arms_resolve_to_their_defaults(tmp_path):
    """The transformers arm's overrides, through the recipe's own parser, model builder and optimizer, give
    transformers' defaults, and its backbone is frozen as a model built by transformers itself is (the whole
    HF ResNet); the recipe arm differs in each of them and nothing else; transformers_knobs differs from the
    transformers arm only in the backbone, trained as in the recipe (built, not trained)."""
    from transformers import AutoModelForObjectDetection, DeformableDetrConfig, TrainingArguments

    from conftest import DEMO
    from recipe.config.load import parse_config
    from recipe.engine.trainer import DetectionTrainer
    from recipe.models.families import family_of, loss_weights
    from recipe.models.loading import load_model_and_processor

    bench = _load("recipe_vs_defaults")
    hf_config, hf_args = DeformableDetrConfig(), TrainingArguments(output_dir=str(tmp_path / "hf"))
    resolved = {}
    for arm in bench.ARMS:
        _, model_args, train_args, _ = parse_config(bench.arm_argv(arm, DEMO, str(tmp_path / arm), quick=True))
        with bench.backbone_as_transformers_leaves_it(arm):
            model, _ = load_model_and_processor(model_args, {0: "a", 1: "b"})
        train_args.eval_strategy = "no"  # no eval_dataset here (run() does the same without a validation set)
        optimizer = DetectionTrainer(model=model, args=train_args, model_args=model_args).create_optimizer()
        resolved[arm] = {
            "auxiliary_loss": model.config.auxiliary_loss, "class_cost": model.config.class_cost,
            "bbox_cost": model.config.bbox_cost, "giou_cost": model.config.giou_cost,
            "loss_weights": loss_weights(family_of("deformable_detr"), model_args),
            "lrs": sorted({g["lr"] for g in optimizer.param_groups}),
            "weight_decay": train_args.weight_decay, "max_grad_norm": train_args.max_grad_norm,
            "trained_backbone": sorted(n for n, p in model.named_parameters() if "backbone" in n and p.requires_grad),
            "schedule": [getattr(train_args, k) for k in ("learning_rate", "num_train_epochs", "lr_scheduler_type",
                                                           "warmup_steps", "per_device_train_batch_size", "seed")],
        }
    hf = resolved["transformers"]
    assert {k: hf[k] for k in ("auxiliary_loss", "class_cost", "bbox_cost", "giou_cost")} == {
        k: getattr(hf_config, k) for k in ("auxiliary_loss", "class_cost", "bbox_cost", "giou_cost")}
    # transformers' weight_dict: loss_ce fixed at 1, the config's box coefficients, cardinality logged only
    assert hf["loss_weights"] == {"loss_ce": 1.0, "loss_bbox": hf_config.bbox_loss_coefficient,
                                  "loss_giou": hf_config.giou_loss_coefficient, "cardinality_error": 0.0}
    assert hf["lrs"] == [hf["schedule"][0]]  # one lr for every parameter
    assert (hf["weight_decay"], hf["max_grad_norm"]) == (hf_args.weight_decay, hf_args.max_grad_norm)
    as_built = AutoModelForObjectDetection.from_config(model.config)  # transformers' own freezing
    assert hf["trained_backbone"] == sorted(n for n, p in as_built.named_parameters()
                                            if "backbone" in n and p.requires_grad) == []
    recipe, knobs = resolved["recipe"], resolved["transformers_knobs"]
    # random weights: the recipe trains every backbone parameter, its batch norms' affine included (transformers
    # leaves them frozen buffers: 16 conv weights, + 2 x 16 norm weights and biases)
    convs = sorted(n for n, _ in as_built.named_parameters() if "backbone" in n)
    assert len(convs) == 16 and set(convs) < set(recipe["trained_backbone"])
    assert len(recipe["trained_backbone"]) == 48
    assert all(n.endswith((".weight", ".bias")) and "normalization" in n
               for n in set(recipe["trained_backbone"]) - set(convs))
    assert [k for k in recipe if recipe[k] != hf[k]] == [
        "auxiliary_loss", "class_cost", "loss_weights", "lrs", "weight_decay", "max_grad_norm", "trained_backbone"]
    assert [k for k in knobs if knobs[k] != hf[k]] == ["trained_backbone"]
    assert knobs["trained_backbone"] == recipe["trained_backbone"]


def test_stage_marks_record_only_inside_record():
    """The timer seam the benchmarks read: marked stages are summed inside `record()` and cost nothing outside."""
    import torch

    from recipe.core import stage_timer as timing
    from recipe.models.postprocess import postprocess_detections

    calls = [lambda: postprocess_detections(torch.zeros(1, 5, 3), torch.full((1, 5, 4), 0.5),
                                            torch.tensor([[10, 20]]), top_k=4)]
    module = torch.nn.Linear(2, 2)
    timing.time_forward(module)
    calls.append(lambda: module(torch.zeros(1, 2)))
    for call in calls:
        call()
    assert timing.active() is None
    with timing.record() as times:
        for call in calls:
            call()
        with pytest.raises(RuntimeError):
            module(torch.zeros(1, 3))  # a failing forward still closes its stage
        module(torch.zeros(1, 2))
    assert set(times.seconds) == {"postprocess", "forward"} and all(v > 0 for v in times.seconds.values())
    assert timing.active() is None
