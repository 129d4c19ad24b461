"""End-to-end: the Trainer wiring, the output folder, offline behaviour, BCCD's real JPEGs."""

import json
import math
import subprocess
import sys

import pytest

from conftest import DEMO, ROOT, demo_args, shared
from recipe.config.load import parse_config
from recipe.core.errors import ModelNotAvailable
from recipe.evaluation.coco_eval import METRIC_KEYS
from recipe.training.run import run


def test_two_steps_then_full_eval_and_a_hub_style_folder(trained_demo, demo_dir, tmp_path):
    from transformers import AutoModelForObjectDetection, pipeline

    out, metrics = trained_demo  # conftest's 2-step demo run
    assert math.isfinite(metrics["eval_loss"])
    saved = json.loads((out / "eval_results.json").read_text())
    assert saved["eval_map"] == metrics["eval_map"] and "eval_map_50" in saved
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "README.md", "data_report.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "car", "1": "truck", "2": "pedestrian", "3": "traffic light",
                                  "4": "traffic sign"}
    assert config["auxiliary_loss"] is True and config["class_cost"] == 2
    report = json.loads((out / "data_report.json").read_text())
    assert report["train"]["images"] == 24 and report["validation"]["images"] == 8
    assert "| map |" in (out / "README.md").read_text()

    model, info = AutoModelForObjectDetection.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert model.config.num_labels == 5

    # Standalone evaluation of the saved folder gives the training run's final numbers.
    from recipe.evaluation.evaluate import evaluate_checkpoint

    again = evaluate_checkpoint(str(out), f"{demo_dir}/val/images", f"{demo_dir}/val/annotations.json",
                                output=str(tmp_path / "m.json"), predictions_out=str(tmp_path / "r.json"),
                                batch_size=3, num_workers=0, dataset_cache_dir=str(tmp_path / "cache"))
    assert all(abs(again[k] - metrics[f"eval_{k}"]) <= 1e-9 for k in METRIC_KEYS)
    assert again["num_processes"] == 1 and again["num_images"] == 8
    results = json.loads((tmp_path / "r.json").read_text())
    assert len(results) == 8 * 100 and {r["image_id"] for r in results} == set(range(1, 9))
    assert json.loads((tmp_path / "m.json").read_text())["map"] == again["map"]
    detector = pipeline("object-detection", model=str(out), threshold=0.0)
    found = detector(str(demo_dir / "val" / "images" / "000001.jpg"))
    assert found and {"score", "label", "box"} <= set(found[0])


class _Stop(Exception):
    pass


def test_on_the_cpu_the_loader_flips_and_resizes_not_the_batch(demo_dir, tmp_path, monkeypatch):
    """Where the model runs on the CPU there is no device to offload to: the training transform flips and resizes
    with cv2 in the loader (`batch_geometry=False`), the cheaper path (tests/test_collate.py: same draws, same
    boxes)."""
    import recipe.training.run

    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(recipe.training.run, "build_datasets", stop)
    with pytest.raises(_Stop):
        run(*demo_args(demo_dir, tmp_path, "--max_steps", "1", "--use_cpu", "true"))
    assert seen["batch_geometry"] is False


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_same_seed_same_loss_history_whatever_the_workers_other_seed_differs(demo_dir, tmp_path):
    """--seed fixes the augmentation too (per image and epoch, not per worker or fetch order): 3 steps over 2
    epochs repeat exactly with 0 or 2 dataloader workers."""
    def history(name, seed, workers):
        run(*demo_args(demo_dir, tmp_path / name, "--subset", "4", "--max_steps", "3", "--warmup_steps", "0",
                       "--per_device_train_batch_size", "2", "--val-ann", "", "--val-img", "", "--seed", str(seed),
                       "--dataloader_num_workers", str(workers)))
        logs = json.loads((tmp_path / name / "out" / "trainer_state.json").read_text())["log_history"]
        return [{k: v for k, v in r.items() if k != "epoch"} for r in logs if "loss" in r]

    first = history("a", 0, 0)
    assert [r["step"] for r in first] == [1, 2, 3]
    assert history("b", 0, 2) == first
    other = history("c", 1, 0)
    assert all(r["loss"] != o["loss"] for r, o in zip(first, other))


def test_offline_missing_model_is_a_clear_error_before_any_data(tmp_path):
    args = parse_config(["--pretrained", "nobody/no-such-model", "--offline", "--train-img", str(tmp_path),
                         "--train-ann", str(tmp_path / "missing.json"), "--output-dir", str(tmp_path / "o")])
    with pytest.raises(ModelNotAvailable, match="'nobody/no-such-model' is not in the local cache"):
        run(*args)  # a DataError (missing.json) would mean the data was read first
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--pretrained", "nobody/no-such-model",
                           "--offline", "--train-ann", str(tmp_path / "missing.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: model 'nobody/no-such-model' is not in")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_seed_smoke_command_prints_finite_falling_losses(demo_dir, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), DEMO,
                           "--train-img", f"{demo_dir}/train/images",
                           "--train-ann", f"{demo_dir}/train/annotations.json",
                           "--val-img", f"{demo_dir}/val/images", "--val-ann", f"{demo_dir}/val/annotations.json",
                           "--subset", "16", "--num-epochs", "2", "--batch-size", "4", "--num-workers", "0",
                           "--output-dir", str(tmp_path / "smoke"), "--dataset_cache_dir", str(tmp_path / "cache"),
                           "--logging_steps", "1", "--shortest_edges", "128", "--eval_size", "128"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = [float(line.split("'loss': '")[1].split("'")[0]) for line in proc.stdout.replace("\r", "\n").splitlines()
              if "'loss': '" in line]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-2:]) < sum(losses[:2])
    assert "data report: train" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_few_steps_on_bccd_real_jpegs(tmp_path):
    folder = shared("bccd", "coco_by_yukkyo_voc2coco")
    images = shared("bccd", "BCCD", "JPEGImages")
    metrics = run(*parse_config([
        DEMO, "--train-img", str(images), "--train-ann", str(folder / "bccd_train_cocoformat.json"),
        "--val-img", str(images), "--val-ann", str(folder / "bccd_val_cocoformat.json"), "--subset", "8",
        "--max_steps", "3", "--per_device_train_batch_size", "2", "--output_dir", str(tmp_path / "out"),
        "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
        "--shortest_edges", "160", "--eval_size", "160", "--crop_prob", "0.5"]))
    assert math.isfinite(metrics["eval_loss"])
    state = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert state["eval_map"] == metrics["eval_map"]


def test_demo_data_is_generated_only_for_splits_that_read_it(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import recipe.data.synthetic
    from recipe.training.data import prepare_demo_data

    made = []
    monkeypatch.setattr(recipe.data.synthetic, "make_demo_dataset", lambda folder: made.append(folder))
    demo = str(tmp_path / "demo")
    mine = SimpleNamespace(demo_data=demo, train_img=str(tmp_path / "mine/images"), train_ann=str(tmp_path / "m.json"),
                           val_img=None, val_ann=None)
    prepare_demo_data(mine)  # demo.yaml pointed at your own data: no 12 MB of synthetic scenes
    assert made == []
    prepare_demo_data(SimpleNamespace(**{**vars(mine), "train_img": f"{demo}/train/images"}))
    assert made == [demo]
