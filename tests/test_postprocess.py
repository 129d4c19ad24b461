import numpy as np
import pytest
import torch

from recipe.evaluation.metrics import CocoDetectionMetrics
from recipe.models.postprocess import postprocess_detections


def test_top_k_over_queries_and_classes_hand_computed():
    # 2 queries x 2 classes; sigmoid(logit) gives the scores below.
    p = torch.tensor([[[0.9, 0.2], [0.6, 0.7]]])
    logits = torch.log(p / (1 - p))
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.5, 0.5]]])  # cxcywh_norm
    out = postprocess_detections(logits, boxes, torch.tensor([[100, 200]]), top_k=3)  # h=100, w=200
    expected = torch.tensor([[[0.9, 0, 80, 30, 40, 40],    # query 0, class 0
                              [0.7, 1, 0, 0, 100, 50],     # query 1, class 1 (one query, two labels)
                              [0.6, 0, 0, 0, 100, 50]]])   # query 1, class 0
    torch.testing.assert_close(out, expected)


def test_top_k_is_capped_by_queries_times_classes():
    out = postprocess_detections(torch.zeros(2, 3, 2), torch.full((2, 3, 4), 0.5), torch.tensor([[10, 10]] * 2))
    assert out.shape == (2, 6, 6)


def test_softmax_models_drop_the_no_object_class():
    logits = torch.tensor([[[0.0, 0.0, 10.0]]])  # mostly "no object"
    out = postprocess_detections(logits, torch.full((1, 1, 4), 0.5), torch.tensor([[10, 10]]), softmax=True)
    assert out.shape == (1, 2, 6) and out[0, :, 0].max() < 1e-4


def test_metrics_map_labels_back_to_category_ids_and_score_perfectly():
    gt = {"images": [{"id": 5, "width": 200, "height": 100}, {"id": 6, "width": 200, "height": 100}],
          "annotations": [{"id": 1, "image_id": 5, "category_id": 17, "bbox": [80, 30, 40, 40], "area": 1600,
                           "iscrowd": 0}],
          "categories": [{"id": 3, "name": "a"}, {"id": 17, "name": "b"}]}
    metrics = CocoDetectionMetrics(gt, label_to_category_id=[3, 17], keep_rows=True)
    dets = np.array([[[0.9, 1, 80, 30, 40, 40], [0.1, 0, 0, 0, 10, 10]],
                     [[0.2, 0, 5, 5, 10, 10], [0.1, 1, 5, 5, 10, 10]]])

    class Pred:
        predictions, label_ids = dets, np.array([5, 6])

    assert metrics(Pred, compute_result=False) == {}
    rows = metrics._rows
    assert rows[0][0].tolist() == [5, 80, 30, 40, 40, 0.9, 17]
    result = metrics(type("P", (), {"predictions": dets[:0], "label_ids": np.array([])}), compute_result=True)
    one = pytest.approx(1.0, abs=1e-12)
    assert (result["map"], result["map_50"], result["map_medium"], result["map_class/b"]) == (one, one, one, one)
    assert result["map_small"] == -1.0  # no small ground truth: COCOeval's -1
    assert "map_a" not in result  # class a has no ground truth
    assert metrics.last_result["per_class"] == {"a": None, "b": one}
