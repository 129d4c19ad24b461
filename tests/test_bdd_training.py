"""Training straight from BDD100K labels, and scoring BDD-format predictions with the CLI."""

import json
import math
import subprocess
import sys

import pytest

from conftest import ROOT, shared, write_json
from recipe.cli.main import evaluate_main
from recipe.config.load import parse_config
from recipe.data.bdd100k import BDD_CATEGORIES
from recipe.data.builder import load_detection_dataset
from recipe.data.synthetic import make_demo_dataset
from recipe.evaluation.coco_eval import METRIC_KEYS, gt_from_table
from recipe.training.run import run


@pytest.fixture(scope="module")
def bdd_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("bdd_demo")
    make_demo_dataset(out, seed=1, num_train=12, num_val=6, fmt="bdd100k")
    return out


def test_demo_in_bdd_form_is_a_frame_list_with_bdd_names(bdd_demo):
    frames = json.loads((bdd_demo / "train" / "annotations.json").read_text())
    assert isinstance(frames, list) and len(frames) == 12
    names = {label["category"] for f in frames for label in (f["labels"] or [])}
    assert names <= {c["name"] for c in BDD_CATEGORIES} and len(names) >= 4


def test_crowd_and_ignored_boxes_stay_as_crowd_in_the_eval_ground_truth(tmp_path, bdd_demo):
    frames = [{"name": "000001.jpg", "labels": [
        {"id": "1", "category": "car", "attributes": {"crowd": True}, "box2d": {"x1": 0, "y1": 0, "x2": 9, "y2": 9}},
        {"id": "2", "category": "trailer", "box2d": {"x1": 10, "y1": 10, "x2": 29, "y2": 19}},
        {"id": "3", "category": "person", "box2d": {"x1": 50, "y1": 50, "x2": 59, "y2": 79}}]}]
    ann = write_json(tmp_path / "f.json", frames)
    data = load_detection_dataset(ann, bdd_demo / "train" / "images", cache_dir=str(tmp_path / "c"),
                                  bdd_image_size=(320, 240))
    gt = gt_from_table(data.dataset, data.categories)
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in gt["annotations"]] == [
        (3, [0.0, 0.0, 10.0, 10.0], 1), (4, [10.0, 10.0, 20.0, 10.0], 1), (1, [50.0, 50.0, 10.0, 30.0], 0)]


def test_labels_are_clipped_to_the_given_frame_size(tmp_path, bdd_demo):
    """BDD100K labels carry no image size: boxes are clipped to the frame size given (--bdd_image_size), and the
    data report counts it."""
    frames = [{"name": "000001.jpg", "labels": [
        {"id": "1", "category": "car", "box2d": {"x1": 300, "y1": -5, "x2": 400, "y2": 99}},
        {"id": "2", "category": "bus", "box2d": {"x1": 330, "y1": 10, "x2": 360, "y2": 20}}]}]  # wholly outside
    ann = write_json(tmp_path / "f.json", frames)
    data = load_detection_dataset(ann, bdd_demo / "train" / "images", cache_dir=str(tmp_path / "c"),
                                  bdd_image_size=(320, 240))
    gt = gt_from_table(data.dataset, data.categories)
    assert [(a["category_id"], a["bbox"]) for a in gt["annotations"]] == [(3, [300.0, 0.0, 20.0, 100.0])]
    assert (data.report["boxes_clamped"], data.report["boxes_dropped_degenerate"]) == (1, 1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_steps_and_evaluation_straight_from_bdd_labels(tmp_path, bdd_demo, capsys):
    val_img, val_ann = str(bdd_demo / "val" / "images"), str(bdd_demo / "val" / "annotations.json")
    metrics = run(*parse_config([
        str(ROOT / "configs" / "demo.yaml"), "--train-img", str(bdd_demo / "train" / "images"),
        "--train-ann", str(bdd_demo / "train" / "annotations.json"), "--val-img", val_img,
        "--val-ann", val_ann, "--bdd_image_size", "320", "240",
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--output_dir", str(tmp_path / "out"),
        "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
        "--shortest_edges", "128", "--eval_size", "128"]))
    assert math.isfinite(metrics["eval_loss"])  # the numbers: evaluate.py on the saved folder gives them (below)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(10)] == [c["name"] for c in BDD_CATEGORIES]

    # scripts/evaluate.py --model on the frames: their size is the flag's (BDD100K labels do not carry it);
    # without it the frames are taken for 1280x720 and the mismatch is one line saying which flag to set.
    argv = ["--model", str(tmp_path / "out"), "--images", val_img, "--ann", val_ann, "--num-workers", "0",
            "--dataset_cache_dir", str(tmp_path / "cache"), "--output", str(tmp_path / "m.json")]
    capsys.readouterr()  # the training run's output
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {val_ann}: 6 bad image(s): 000001.jpg (the image is 320x240 (after EXIF "
                             "orientation) but the annotations say 1280x720)")
    assert err[0].endswith("set bdd_image_size (--bdd_image_size W H) to the frames' size, or set skip_bad_images "
                           "to drop them")
    evaluate_main([*argv, "--bdd-image-size", "320", "240", "--predictions-out", str(tmp_path / "p.json"),
                   "--predictions-format", "bdd100k"])
    again = json.loads((tmp_path / "m.json").read_text())
    assert all(abs(again[k] - metrics[f"eval_{k}"]) <= 1e-9 for k in METRIC_KEYS)
    frames = json.loads((tmp_path / "p.json").read_text())
    assert [f["name"] for f in frames] == [f"{i:06d}.jpg" for i in range(1, 7)]
    assert all(len(f["labels"]) == 100 for f in frames)


def test_evaluate_cli_scores_bdd_frame_lists(tmp_path):
    folder = shared("bdd100k-det-202")
    out = tmp_path / "m.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"),
                    "--gt", str(folder / "track_sample_anns.json"),
                    "--predictions", str(folder / "bbox_predictions.json"),
                    "--format", "bdd100k", "--output", str(out)], check=True, capture_output=True)
    metrics = json.loads(out.read_text())
    # scalabel's own test of these files (scalabel/eval/detect_test.py) reports this AP
    assert metrics["map"] == pytest.approx(0.34029392668401016, abs=1e-9)
    assert list(metrics["per_class"]) == [c["name"] for c in BDD_CATEGORIES]
    assert metrics["per_class"]["train"] is None and metrics["per_class"]["car"] > 0
    subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"),
                    "--gt", str(folder / "track_sample_anns.json"),
                    "--predictions", str(folder / "bbox_predictions_empty.json"),
                    "--format", "bdd100k", "--output", str(out)], check=True, capture_output=True)
    empty = json.loads(out.read_text())
    assert empty["map"] == 0.0 and empty["per_class"]["train"] is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fine_tune_a_local_checkpoint_with_other_classes_and_export_bdd_predictions(tmp_path, bdd_demo, demo_dir):
    """A local folder as model_name_or_path (offline): 5 demo classes -> 10 BDD classes (head re-initialised);
    then the saved model's predictions exported as a BDD frame list score like the evaluator says."""
    from recipe.evaluation.evaluate import evaluate_checkpoint
    from recipe.evaluation.score_results import evaluate_files

    common = ["--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
              "--shortest_edges", "128", "--eval_size", "128", "--per_device_train_batch_size", "2"]
    run(*parse_config([str(ROOT / "configs" / "demo.yaml"), "--train-img", f"{demo_dir}/train/images",
                       "--train-ann", f"{demo_dir}/train/annotations.json", "--max_steps", "1",
                       "--output_dir", str(tmp_path / "coco5"), *common]))
    run(*parse_config(["--pretrained", str(tmp_path / "coco5"), "--offline", "--train-img",
                       str(bdd_demo / "train" / "images"), "--train-ann", str(bdd_demo / "train" / "annotations.json"),
                       "--bdd_image_size", "320", "240", "--max_steps", "1", "--output_dir", str(tmp_path / "bdd10"),
                       *common]))
    config = json.loads((tmp_path / "bdd10" / "config.json").read_text())
    assert len(config["id2label"]) == 10 and config["id2label"]["9"] == "traffic sign"

    val_ann = str(bdd_demo / "val" / "annotations.json")
    preds = tmp_path / "preds.json"
    metrics = evaluate_checkpoint(str(tmp_path / "bdd10"), str(bdd_demo / "val" / "images"), val_ann,
                                  predictions_out=str(preds), predictions_format="bdd100k", num_workers=0,
                                  dataset_cache_dir=str(tmp_path / "cache"), bdd_image_size=(320, 240))
    frames = json.loads(preds.read_text())
    assert [f["name"] for f in frames] == [f"{i:06d}.jpg" for i in range(1, 7)]
    assert all(len(f["labels"]) == 100 and "score" in f["labels"][0] for f in frames)
    rescored = evaluate_files(val_ann, str(preds), fmt="bdd100k")
    assert abs(rescored["map"] - metrics["map"]) <= 1e-9  # inclusive box2d written and read back
