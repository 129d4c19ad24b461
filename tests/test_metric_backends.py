"""faster-coco-eval gives pycocotools' numbers (observed max difference: 1.1e-16, float summation order)."""

import json

import pytest

from conftest import shared
from recipe.data.bdd100k import bdd_predictions_to_coco_results, bdd_to_coco, load_frames
from recipe.evaluation.coco_eval import METRIC_KEYS, coco_eval, quiet_coco

pytest.importorskip("faster_coco_eval", reason="optional extra: pip install -e '.[faster-coco-eval]'")


def assert_same(a, b):
    assert max(abs(a[k] - b[k]) for k in METRIC_KEYS) <= 1e-12
    assert a["per_class"].keys() == b["per_class"].keys()
    for name, ap in a["per_class"].items():
        assert (ap is None) == (b["per_class"][name] is None), name
        assert ap is None or abs(ap - b["per_class"][name]) <= 1e-12, name


def test_same_numbers_on_coco_val2014_100():
    folder = shared("coco-val2014-100")
    gt = json.loads((folder / "instances_val2014_100.json").read_text())
    dt = json.loads((folder / "instances_val2014_fakebbox100_results.json").read_text())
    fast = coco_eval(quiet_coco(gt), dt, backend="faster_coco_eval")
    assert_same(coco_eval(quiet_coco(gt), dt), fast)
    expected = json.loads((folder / "expected_stats.json").read_text())["bbox"]
    assert max(abs(fast[k] - e) for k, e in zip(METRIC_KEYS, expected)) <= 1e-12


def test_same_numbers_on_the_202_bdd100k_frames():
    folder = shared("bdd100k-det-202")
    gt = bdd_to_coco(load_frames(folder / "track_sample_anns.json"))
    dt = bdd_predictions_to_coco_results(load_frames(folder / "bbox_predictions.json"),
                                         {i["file_name"]: i["id"] for i in gt["images"]})
    assert_same(coco_eval(quiet_coco(gt), dt), coco_eval(quiet_coco(gt), dt, backend="faster_coco_eval"))


def test_unknown_backend_is_an_error():
    gt = {"images": [{"id": 1, "width": 9, "height": 9}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0}]}
    with pytest.raises(ValueError, match="metric_backend 'nope'"):
        coco_eval(quiet_coco(gt), [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 1.0}],
                  backend="nope")
