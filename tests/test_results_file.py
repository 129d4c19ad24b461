"""The one COCO results writer (`recipe/evaluation/results_writer.py`): exact values, no rounding, and a file that
scores exactly
as the rows it was written from."""

import json

import numpy as np
import pytest

from recipe.core.errors import DataError
from recipe.evaluation.coco_eval import METRIC_KEYS, coco_eval, quiet_coco
from recipe.evaluation.results_writer import (
    image_ids_by_file_name,
    results_from_detections,
    results_from_rows,
    write_results_file,
)

# float32 values, as the model puts them out, widened to the float64 the evaluation rows hold
F32 = [float(np.float32(v)) for v in (10.1, 20.2, 30.3, 40.4, 0.123456789)]


def test_rows_become_entries_with_every_digit():
    rows = np.array([[3, *F32[:4], F32[4], 7]], dtype=np.float64)
    assert F32[0] == 10.100000381469727 and F32[4] == 0.12345679104328156  # what "every digit" means here
    assert results_from_rows(rows) == [{"image_id": 3, "category_id": 7, "bbox": F32[:4], "score": F32[4]}]
    # the file's own ids (strings) where the table renumbered them
    assert results_from_rows(rows, {3: "a.jpg"})[0]["image_id"] == "a.jpg"
    assert results_from_rows(np.zeros((0, 7))) == []


def test_detections_map_labels_to_category_ids_and_keep_the_file_name_after_the_image_id():
    dets = np.array([[0.9, 1, 1.5, 2.5, 3.0, 4.0], [0.25, 0, 0.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    out = results_from_detections(dets, image_id=5, category_ids=[11, 22], file_name="x/a.jpg")
    assert out == [{"image_id": 5, "file_name": "x/a.jpg", "category_id": 22, "bbox": [1.5, 2.5, 3.0, 4.0],
                    "score": float(np.float32(0.9))},
                   {"image_id": 5, "file_name": "x/a.jpg", "category_id": 11, "bbox": [0.0, 0.0, 1.0, 1.0],
                    "score": 0.25}]
    assert list(out[0]) == ["image_id", "file_name", "category_id", "bbox", "score"]
    assert results_from_detections(np.zeros((0, 6)), image_id=5, category_ids=[11]) == []


def test_the_file_is_one_entry_per_line_and_reads_back_to_the_same_numbers(tmp_path):
    entries = results_from_rows(np.array([[1, *F32[:4], F32[4], 2], [1, 0, 0, 1, 1, 0.5, 2]]))
    path = write_results_file(tmp_path / "new" / "r.json", entries)
    text = path.read_text()
    assert text == ('[{"image_id": 1, "category_id": 2, "bbox": [10.100000381469727, 20.200000762939453, '
                    '30.299999237060547, 40.400001525878906], "score": 0.12345679104328156},\n'
                    '{"image_id": 1, "category_id": 2, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.5}]\n')
    assert json.loads(text) == entries
    assert write_results_file(tmp_path / "e.json", []).read_text() == "[]\n"


def test_scores_that_rounding_would_tie_keep_their_order_and_the_file_scores_as_the_rows():
    """Two detections 2e-6 apart in score: rounded to 5 decimals they tie and COCOeval keeps them in file order
    (the false positive first: AP 0.5); written unrounded the true positive ranks first (AP 1)."""
    gt = quiet_coco({"images": [{"id": 1, "width": 100, "height": 100}],
                     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20],
                                      "area": 400, "iscrowd": 0}],
                     "categories": [{"id": 1, "name": "a"}]})
    rows = np.array([[1, 60, 60, 20, 20, 0.500001, 1], [1, 10, 10, 20, 20, 0.500003, 1]])
    written = json.loads(json.dumps(results_from_rows(rows)))
    from_rows, from_file = coco_eval(gt, rows), coco_eval(gt, written)
    assert {k: from_file[k] for k in METRIC_KEYS} == {k: from_rows[k] for k in METRIC_KEYS}
    assert from_file["map_50"] == pytest.approx(1.0)
    rounded = [{**r, "score": round(r["score"], 5)} for r in written]
    assert coco_eval(gt, rounded)["map_50"] < 1.0


def test_file_names_find_the_ground_truths_ids():
    gt = {"images": [{"id": 7, "file_name": "val/a.jpg"}, {"id": 8, "file_name": "b.jpg"}]}
    results = [{"image_id": 1, "file_name": "val/a.jpg"}, {"image_id": 2, "file_name": "elsewhere/b.jpg"}]
    assert [r["image_id"] for r in image_ids_by_file_name(results, gt)] == [7, 8]
    with pytest.raises(DataError, match=r"r.json: result #1 is for c.jpg, which is not an image of the ground truth"):
        image_ids_by_file_name([{"image_id": 1, "file_name": "c.jpg"}], gt, source="r.json")
