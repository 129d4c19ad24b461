"""--dataset end to end: the same scenes written as COCO, Pascal VOC, YOLO give the same table; training runs on a VOC
root and a YOLO data.yaml; evaluating the model on each format (any class order) gives the same 12 numbers."""

import json
import logging
import re
import shutil

import numpy as np
import pytest

from conftest import DEMO, demo_as_parquet, demo_as_voc, demo_as_yolo
from recipe.config.load import parse_config, parse_evaluate_args
from recipe.core.errors import ConfigError, DataError
from recipe.data.splits import load_dataset_splits
from recipe.evaluation.coco_eval import METRIC_KEYS
from recipe.training.run import run

DEMO_CLASSES = ["car", "truck", "pedestrian", "traffic light", "traffic sign"]


@pytest.fixture(scope="module")
def formats(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("formats")
    return {"coco": demo_dir, "voc": demo_as_voc(demo_dir, out / "voc"), "yolo": demo_as_yolo(demo_dir, out / "yolo"),
            "parquet": demo_as_parquet(demo_dir, out / "parquet")}


def _boxes(table):
    return {(row["width"], row["height"], i): (row["objects"]["category"], row["objects"]["bbox"])
            for i, row in enumerate(table.dataset.with_format(None))}


def test_the_same_scenes_in_every_format_give_the_same_table(formats, tmp_path):
    from recipe.data.formats import DatasetOptions

    coco = load_dataset_splits(str(formats["coco"]), cache_dir=str(tmp_path / "c"))
    voc = load_dataset_splits(str(formats["voc"]), DatasetOptions(class_names=tuple(DEMO_CLASSES)),
                              cache_dir=str(tmp_path / "c"))
    yolo = load_dataset_splits(str(formats["yolo"]), cache_dir=str(tmp_path / "c"))
    parquet = load_dataset_splits(str(formats["parquet"]), cache_dir=str(tmp_path / "c"))
    for split in ("train", "validation"):
        assert _boxes(parquet[split]) == _boxes(coco[split])  # exact: float32 holds the integer boxes
        assert [c["name"] for c in voc[split].categories] == [c["name"] for c in coco[split].categories]
        assert [c["name"] for c in yolo[split].categories] == DEMO_CLASSES
        assert _boxes(voc[split]) == _boxes(coco[split])  # exact: integer corners
        for key, (cats, boxes) in _boxes(coco[split]).items():
            got_cats, got_boxes = _boxes(yolo[split])[key]
            assert got_cats == cats
            np.testing.assert_allclose(got_boxes, boxes, rtol=0, atol=1e-9)  # the normalised text's rounding


def _train(dataset, tmp_path, *extra):
    return run(*parse_config([DEMO, "--dataset", dataset, "--output_dir", str(tmp_path / "out"),
                              "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
                              "--shortest_edges", "128", "--eval_size", "128", "--max_steps", "2",
                              "--per_device_train_batch_size", "2", "--logging_steps", "1", *extra]))


def _evaluate(model, dataset, tmp_path, *extra):
    from recipe.evaluation.evaluate import evaluate

    return evaluate(*parse_evaluate_args(["--model", str(model), "--dataset", str(dataset), "--dataset_cache_dir",
                                          str(tmp_path / "cache"), "--dataloader_num_workers", "0", *extra]))


@pytest.fixture(scope="module")
def voc_model(formats, tmp_path_factory):
    """A model trained 2 steps on the VOC root (no class_names: sorted names) -> (output folder, final metrics)."""
    tmp_path = tmp_path_factory.mktemp("voc_model")
    return tmp_path / "out", _train(str(formats["voc"]), tmp_path)


def test_train_on_a_voc_root_then_every_format_scores_the_same(formats, voc_model, tmp_path, caplog):
    out, metrics = voc_model
    config = json.loads((out / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(5)] == sorted(DEMO_CLASSES)
    assert config["category_ids"] == [1, 2, 3, 4, 5]
    report = json.loads((out / "data_report.json").read_text())
    assert report["train"]["images"] == 24 and report["validation"]["images"] == 8
    assert report["train"]["format"] == "voc"
    assert "on `" + str(formats["voc"]) in (out / "README.md").read_text()
    own = {k: metrics[f"eval_{k}"] for k in METRIC_KEYS}
    own_per_class = json.loads((out / "eval_per_class.json").read_text())
    # The model's classes in the demo's order (COCO ids 1..5 for other names; YOLO's and parquet's 0..4): the
    # same numbers, exactly but for YOLO's normalised text.
    for name, exact in (("voc", True), ("coco", True), ("parquet", True), ("yolo", False)):
        got = _evaluate(out, formats[name], tmp_path)
        for k in METRIC_KEYS:
            assert got[k] == own[k] if exact else abs(got[k] - own[k]) <= 1e-6, (name, k, got[k], own[k])
    # A dataset without traffic signs but with a class of its own: scored on the four in common, said in one line.
    other = shutil.copytree(formats["voc"], tmp_path / "other")
    for xml in (other / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace(">traffic sign<", ">zebra<"))
    caplog.set_level(logging.WARNING, logger="recipe")
    fewer = _evaluate(out, other, tmp_path, "--class_names", *DEMO_CLASSES[:4], "zebra")
    assert "evaluated on the 4 classes in common; the model lacks ['zebra'], the dataset lacks ['traffic sign']" \
        in caplog.text
    assert fewer["per_class"]["traffic sign"] is None and fewer["per_class"]["truck"] == own_per_class["truck"]
    for xml in (other / "Annotations").glob("*.xml"):
        xml.write_text(re.sub(r"<name>[^<]*</name>", "<name>zebra</name>", xml.read_text()))
    with pytest.raises(DataError, match=r"no class in common with the model \(dataset: \['zebra'\]"):
        _evaluate(out, other, tmp_path)


def test_train_on_a_yolo_data_yaml(formats, tmp_path):
    metrics = _train(str(formats["yolo"]), tmp_path)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(5)] == DEMO_CLASSES and config["category_ids"] == [0, 1, 2, 3, 4]
    again = _evaluate(tmp_path / "out", formats["yolo"], tmp_path)  # the saved folder scores as the run did
    assert all(abs(again[k] - metrics[f"eval_{k}"]) <= 1e-9 for k in METRIC_KEYS), (again, metrics)


def test_dataset_and_annotation_files_on_the_command_line_is_an_error(formats):
    with pytest.raises(ConfigError, match="--dataset and --train_ann both given"):
        parse_config([DEMO, "--dataset", str(formats["voc"]), "--train-ann", "x.json"])
    data = parse_config([DEMO, "--dataset_name", str(formats["voc"])]).data  # the YAML's files give way
    assert data.dataset == str(formats["voc"]) and data.train_ann is None and data.demo_data is None


def test_predict_check_and_browse_take_the_dataset_flag(formats, voc_model, tmp_path, capsys):
    from recipe.cli.main import browse_dataset_main, check_data_main, predict_main

    out, _ = voc_model
    predict_main(["--model", str(out), "--dataset", str(formats["voc"]), "--output", str(tmp_path / "p"),
                  "--threshold", "0", "--draw", "false", "--dataset_cache_dir", str(tmp_path / "cache")])
    results = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert len(results) == 8 * 100 and {r["image_id"] for r in results} == set(range(1, 9))
    assert {r["file_name"] for r in results} == {f"val_{i:06d}.jpg" for i in range(1, 9)}
    with pytest.raises(SystemExit) as e:
        check_data_main(["--dataset", str(formats["yolo"])])
    assert e.value.code == 0
    printed = capsys.readouterr().out
    assert "data report: train (" in printed and "data report: validation (" in printed and "ok: 32 images" in printed
    browse_dataset_main(["--dataset", str(formats["yolo"]), "--split", "train", "--num_images", "2",
                         "--output", str(tmp_path / "grid.jpg"), "--dataset_cache_dir", str(tmp_path / "cache")])
    shown = json.loads((tmp_path / "grid.json").read_text())
    assert len(shown["images"]) == 2 and shown["annotations"].endswith("data.yaml [train]")
    with pytest.raises(SystemExit) as e:
        predict_main(["--model", str(out), "--images", "x.jpg", "--dataset", str(formats["voc"])])
    assert e.value.code == 2


def test_a_coco_json_beside_its_images_is_a_dataset_too(demo_dir, tmp_path):
    from recipe.data.formats import detect

    ann = demo_dir / "val" / "annotations.json"
    assert detect(str(ann)) == "coco" and detect(str(demo_dir)) == "coco"
    data = load_dataset_splits(str(ann), cache_dir=str(tmp_path / "c"), train_val_split=0.25, seed=0)
    assert (len(data["train"].dataset), len(data["validation"].dataset)) == (6, 2)  # images/ found beside the file
    assert data["train"].report["format"] == "coco"
