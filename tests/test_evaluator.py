import json
import subprocess
import sys

import pytest

from conftest import ROOT, shared, write_json
from recipe.evaluation.coco_eval import METRIC_KEYS
from recipe.evaluation.score_results import evaluate_files


def test_reproduces_pycocotools_reference_exactly(tmp_path):
    folder = shared("coco-val2014-100")
    expected = json.loads((folder / "expected_stats.json").read_text())["bbox"]
    out = tmp_path / "metrics.json"
    # The script, as a user runs it.
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"),
                           "--gt", str(folder / "instances_val2014_100.json"),
                           "--predictions", str(folder / "instances_val2014_fakebbox100_results.json"),
                           "--output", str(out)], capture_output=True, text=True, check=True)
    metrics = json.loads(out.read_text())
    assert max(abs(metrics[k] - e) for k, e in zip(METRIC_KEYS, expected)) <= 1e-12
    assert set(metrics) == set(METRIC_KEYS) | {"per_class"}
    assert len(metrics["per_class"]) == 80
    assert metrics["per_class"]["person"] == pytest.approx(0.5326060142444453, abs=1e-12)
    assert metrics["per_class"]["toaster"] is None  # no ground truth in these 100 images
    assert "map=0.5046" in proc.stdout


def test_empty_predictions_give_zeros_not_a_crash(tmp_path):
    gt = write_json(tmp_path / "gt.json", {
        "images": [{"id": 1, "width": 10, "height": 10}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})
    preds = write_json(tmp_path / "p.json", [])
    metrics = evaluate_files(str(gt), str(preds))
    assert metrics["map"] == 0.0 and metrics["per_class"] == {"a": 0.0, "b": None}


def test_bad_predictions_file_is_one_clear_line(tmp_path):
    gt = write_json(tmp_path / "gt.json", {"images": [], "annotations": [], "categories": []})
    preds = write_json(tmp_path / "p.json", {"not": "a list"})
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--gt", str(gt),
                           "--predictions", str(preds)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {preds}: a COCO results file is a JSON list of detections"]


@pytest.mark.parametrize("batch", [1, 7, 100])
def test_batch_by_batch_scoring_equals_one_cocoeval(batch):
    """The training-time evaluator matches batch by batch (flat memory); the numbers must not move."""
    import numpy as np

    from recipe.evaluation.coco_eval import coco_eval, metrics_from, quiet_coco
    from recipe.evaluation.cocoeval_stream import StreamingCocoEval

    folder = shared("coco-val2014-100")
    gt = json.loads((folder / "instances_val2014_100.json").read_text())
    dt = json.loads((folder / "instances_val2014_fakebbox100_results.json").read_text())
    rows = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dt])
    coco = quiet_coco(gt)
    ids = [img["id"] for img in gt["images"]]
    np.random.default_rng(batch).shuffle(ids)  # arrival order must not matter
    stream = StreamingCocoEval(coco)
    for start in range(0, len(ids), batch):
        part = ids[start:start + batch]
        stream.add(rows[np.isin(rows[:, 0], part)], part)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    streamed, reference = metrics_from(stream.finish(), names), coco_eval(coco, rows)
    expected = json.loads((folder / "expected_stats.json").read_text())["bbox"]
    assert [streamed[k] for k in METRIC_KEYS] == expected  # exact, as pycocotools
    assert streamed["per_class"] == reference["per_class"]


def test_list_matching_evaluate_img_equals_pycocotools_field_by_field():
    """The streaming evaluator's matcher (`ListMatchingCOCOeval.evaluateImg`) against pycocotools' own, per
    image, category and area range on the COCO fixture (crowd boxes included) and on detections shifted to
    create near-threshold overlaps: every returned array equal."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.cocoeval import COCOeval

    from recipe.evaluation.coco_eval import quiet_coco
    from recipe.evaluation.cocoeval_stream import ListMatchingCOCOeval

    folder = shared("coco-val2014-100")
    gt = json.loads((folder / "instances_val2014_100.json").read_text())
    assert any(a["iscrowd"] for a in gt["annotations"])
    dt = json.loads((folder / "instances_val2014_fakebbox100_results.json").read_text())
    rng = np.random.default_rng(0)
    shifted = [{**d, "bbox": [v + rng.normal(0, 2) for v in d["bbox"]], "score": float(rng.random())} for d in dt]
    coco = quiet_coco(gt)
    for results in (dt, shifted + dt):
        rows = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in results])
        evaluators = []
        for cls in (COCOeval, ListMatchingCOCOeval):
            with contextlib.redirect_stdout(io.StringIO()):
                evaluator = cls(coco, coco.loadRes(rows), iouType="bbox")
                evaluator.evaluate()
            evaluators.append(evaluator)
        reference, ours = (e.evalImgs for e in evaluators)
        assert len(reference) == len(ours) and sum(r is not None for r in reference) > 500
        for r, o in zip(reference, ours):
            assert (r is None) == (o is None)
            if r is None:
                continue
            assert r.keys() == o.keys()
            for key in r:
                assert np.array_equal(np.asarray(r[key]), np.asarray(o[key])), key


def test_results_table_equals_load_res():
    """The streaming evaluator builds its detections as `COCO.loadRes` does (every field but the unused
    polygon), with the same values, on the COCO fixture's fake results."""
    import contextlib
    import io

    import numpy as np

    from recipe.evaluation.coco_eval import quiet_coco
    from recipe.evaluation.cocoeval_stream import _results

    folder = shared("coco-val2014-100")
    coco = quiet_coco(json.loads((folder / "instances_val2014_100.json").read_text()))
    dt = json.loads((folder / "instances_val2014_fakebbox100_results.json").read_text())
    rows = np.array([[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dt])
    with contextlib.redirect_stdout(io.StringIO()):
        reference, ours = coco.loadRes(rows), _results(coco, rows)
    assert len(ours.dataset["annotations"]) == len(dt) > 100
    for r, o in zip(reference.dataset["annotations"], ours.dataset["annotations"]):
        assert {k: v for k, v in r.items() if k != "segmentation"} == o
    assert ours.dataset["categories"] == reference.dataset["categories"]
    assert ours.imgToAnns.keys() == reference.imgToAnns.keys() and ours.catToImgs == reference.catToImgs
