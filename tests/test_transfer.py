"""Learned weights carry over: a tiny model trained on the demo's 5 classes, published Hub-style in a local cache, is
fine-tuned on new scenes relabelled to 3 other classes (other ids, other names) and, at the same step budget, beats
the same architecture from random weights by a clear margin, with no missing-key or random-initialisation message."""

import json
import logging
import shutil

import pytest

from conftest import DEMO, SEED
from published import FAMILY_MODELS, family_model_config
from recipe.config.load import parse_config
from recipe.data.synthetic import make_demo_dataset
from recipe.training.run import run

# The new task: same scenes, other classes: {old name: (new id, new name)}.
RELABEL = {"car": (31, "vehicle"), "truck": (31, "vehicle"), "pedestrian": (32, "person"),
           "traffic light": (33, "signal"), "traffic sign": (33, "signal")}
# Steps of (pretraining, fine-tuning) per family: Deformable DETR learns slowest (tests/test_memorise.py). RT-DETR
# fine-tunes 60 steps: at 120 its random arm's map_50 was 0.051 here and 0.106 on CI's machine (learned 0.335 / 0.224),
# a margin that moved with the machine; at 60 the random arm has not started to detect (0.000, learned 0.210). D-FINE
# pretrains 900 steps: after 300 it had learned nothing that carries over (learned 0.028 / random 0.035 map_50 after
# 120 fine-tuning steps), after 600 0.124 / 0.035, after 900 0.174 / 0.035 here but 0.058 / 0.025 on CI's machine.
STEPS = {"demo (deformable, box refine)": (900, 150), "rt_detr": (300, 60), "d_fine": (900, 120)}
# Pretraining as the family's original trains (D-FINE: an EMA of the weights, which the run saves and publishes), at
# the decay the recipe's EMA-lag warning suggests for 900 steps (about 1 - 10 / 900). Without it the 900 steps ended
# wherever the constant lr left the last batches: the learned arm's map_50 was 0.174 (seed 0 here), 0.058 (seed 0,
# CI's machine), 0.110 (seed 1); with it 0.129 (seed 0, this test), 0.093 (the same on one thread) and 0.141 / 0.165 /
# 0.257 (seeds 1-3, one thread), random arm 0.025-0.035. Pretraining 1,800 steps (0.115 / 0.197, seeds 1-2) or on 64
# scenes (0.095 / 0.211, seeds 0-1), both with an EMA, did not do better.
PRETRAIN = {"d_fine": ["--use_ema", "true", "--ema_decay", "0.99", "--ema_warmup_steps", "100"]}


def common(data, out, cache, steps):
    return ["--train-img", f"{data}/train/images", "--train-ann", f"{data}/train/annotations.json",
            "--val-img", f"{data}/val/images", "--val-ann", f"{data}/val/annotations.json", "--output_dir", str(out),
            "--dataset_cache_dir", str(cache), "--dataloader_num_workers", "0", "--shortest_edges", "160",
            "--eval_size", "160", "--longest_edge", "214", "--hflip_prob", "0", "--color_jitter_prob", "0",
            "--max_steps", str(steps), "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
            "--warmup_steps", "20", "--lr_scheduler_type", "constant_with_warmup", "--report_to", "none",
            "--eval_strategy", "no", "--save_strategy", "no", "--seed", str(SEED)]


def relabelled(src, dst):
    """The demo scenes of `src` with RELABEL's classes."""
    for split in ("train", "val"):
        shutil.copytree(src / split / "images", dst / split / "images")
        data = json.loads((src / split / "annotations.json").read_text())
        names = {c["id"]: c["name"] for c in data["categories"]}
        for ann in data["annotations"]:
            ann["category_id"] = RELABEL[names[ann["category_id"]]][0]
        data["categories"] = [{"id": i, "name": n} for i, n in sorted(set(RELABEL.values()))]
        (dst / split / "annotations.json").write_text(json.dumps(data))


def publish(folder, hf_home, repo_id):
    """`folder` as a Hub cache snapshot of `repo_id` under `hf_home` (what `hf download` leaves)."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / ("0" * 40), ignore=shutil.ignore_patterns("checkpoint-*", "plots"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Pretraining scenes (demo classes) and new scenes with RELABEL's classes."""
    root = tmp_path_factory.mktemp("transfer")
    make_demo_dataset(root / "pretrain", seed=5, num_train=32, num_val=4)
    # 24 new validation scenes: with 8, one class's AP moved the random arm's map_50 from 0.008 to 0.041 between
    # two runs of the same code (and a pass into a failure).
    make_demo_dataset(root / "raw", seed=11, num_train=16, num_val=24)
    relabelled(root / "raw", root / "new")
    return root


# Command 2 proves the claim on RT-DETR (the cheapest: 300 + 2 x 60 steps); the other two are in the extended tier.
COMMAND_2 = {"rt_detr"}


@pytest.mark.slow
@pytest.mark.timeout(900)  # D-FINE: 900 + 2 x 120 steps, about 3.5 min here
@pytest.mark.parametrize("name", [n if n in COMMAND_2 else pytest.param(n, marks=pytest.mark.extended) for n in STEPS])
def test_learned_weights_beat_random_weights_on_new_classes(name, scenes, tmp_path, monkeypatch, caplog,
                                                           record_figure):
    from huggingface_hub import constants

    hf_home = tmp_path / "hf_home"
    for var, value in (("HF_HOME", hf_home), ("HF_HUB_CACHE", hf_home / "hub")):
        monkeypatch.setattr(constants, var, str(value))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    config = json.dumps(family_model_config(FAMILY_MODELS[name]))
    pretrain_steps, finetune_steps = STEPS[name]
    run(*parse_config([DEMO, "--model_config", config, *common(scenes / "pretrain", tmp_path / "pre",
                                                               tmp_path / "cache", pretrain_steps),
                       *PRETRAIN.get(name, [])]))
    publish(tmp_path / "pre", hf_home, "recipe-tests/pretrained")

    caplog.clear()
    with caplog.at_level(logging.INFO):
        learned = run(*parse_config([DEMO, "--model_config", "none", "--model_name_or_path", "recipe-tests/pretrained",
                                     "--offline", "true", *common(scenes / "new", tmp_path / "learned",
                                                                  tmp_path / "cache", finetune_steps)]))
    messages = " ".join(r.getMessage() for r in caplog.records).lower()
    assert "random" not in messages and "missing" not in messages and "newly initialized" not in messages
    assert "new classification heads for 3 classes (checkpoint: 5)" in messages
    fresh = run(*parse_config([DEMO, "--model_config", "none", "--model_name_or_path", "recipe-tests/pretrained",
                               "--offline", "true", "--random_init", "true",
                               *common(scenes / "new", tmp_path / "fresh", tmp_path / "cache", finetune_steps)]))
    saved = json.loads((tmp_path / "learned" / "config.json").read_text())
    assert saved["id2label"] == {"0": "vehicle", "1": "person", "2": "signal"} and saved["category_ids"] == [31, 32, 33]
    print(f"{name}: learned map {learned['eval_map']:.3f} / map_50 {learned['eval_map_50']:.3f}; random "
          f"{fresh['eval_map']:.3f} / {fresh['eval_map_50']:.3f}")
    record_figure(learned_map=learned["eval_map"], learned_map_50=learned["eval_map_50"], random_map=fresh["eval_map"],
                  random_map_50=fresh["eval_map_50"])
    # RT-DETR (command 2), seeds 0-2 on 1 / 2 threads (2026-12-06): learned 0.128-0.252, random 0.000-0.013 map_50;
    # the margin asks at most 0.063 of the learned arm there. Extended tier, seed 0 (1 and 2 threads) and seeds 1, 2
    # (1 thread, 2026-12-07): demo learned 0.087-0.119 / random 0.003-0.016 (the margin asks at most 0.066), D-FINE
    # learned 0.093-0.129 / random 0.001-0.035 (asks at most 0.085): the claim holds on every run.
    # Measured here (map_50 learned / random, 24 new validation scenes): demo 0.087 / 0.003 (0.119 / 0.003 in a
    # second run on one thread), RT-DETR 0.210 / 0.000, D-FINE 0.129 / 0.035 (pretrained with an EMA, above). The
    # margin: twice the random arm's map_50 and 0.05 above it (the random arm moves most between machines: RT-DETR's,
    # at 120 steps, from 0.051 here to 0.106 on CI's).
    assert learned["eval_map_50"] >= max(2 * fresh["eval_map_50"], fresh["eval_map_50"] + 0.05), (learned, fresh)
    assert learned["eval_map"] > fresh["eval_map"]
