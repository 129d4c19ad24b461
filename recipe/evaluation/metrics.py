"""The compute_metrics hook: detections arrive batch by batch, COCOeval runs once per evaluation.

Per-class AP is reported under its own namespace, `map_class/<name>`, so a class called `small` or `50`
cannot overwrite `map_small` or `map_50`.
"""

from __future__ import annotations

import numpy as np
import torch

from recipe.core.distributed import is_main_process, run_on_main_then_broadcast
from recipe.core.stage_timer import stage
from recipe.evaluation.coco_eval import (
    BACKENDS,
    METRIC_KEYS,
    ROW_BOX,
    ROW_CATEGORY,
    ROW_IMAGE_ID,
    ROW_SCORE,
    coco_eval,
    metrics_from,
    quiet_coco,
)
from recipe.evaluation.cocoeval_stream import StreamingCocoEval
from recipe.models.postprocess import DET_BOX, DET_LABEL, DET_SCORE

PER_CLASS_PREFIX = "map_class/"


def flat_metrics(result: dict) -> dict:
    """The 12 COCO numbers plus `map_class/<name>` for each class with ground truth."""
    flat = {k: result[k] for k in METRIC_KEYS}
    flat.update({f"{PER_CLASS_PREFIX}{name}": ap for name, ap in result["per_class"].items() if ap is not None})
    return flat


def detection_rows(dets: np.ndarray, image_id: int, label_to_category_id: np.ndarray) -> np.ndarray:
    """dets [K, 6] (score, label, xywh_abs) of one image -> result rows [K, 7] in the dataset's category ids."""
    rows = np.empty((len(dets), 7), dtype=np.float64)
    rows[:, ROW_IMAGE_ID] = image_id
    rows[:, ROW_BOX] = dets[:, DET_BOX]
    rows[:, ROW_SCORE] = dets[:, DET_SCORE]
    rows[:, ROW_CATEGORY] = label_to_category_id[dets[:, DET_LABEL].astype(np.int64)]
    return rows


class CocoDetectionMetrics:
    """compute_metrics for `batch_eval_metrics=True`: keeps only the kept detections between batches.

    Expects `EvalPrediction(predictions=[B, K, 6] (score, label, xywh_abs), label_ids=[B] image ids)`, as
    returned by `DetectionTrainer.prediction_step`. Labels are mapped back to the dataset's category ids.
    """

    def __init__(self, gt: dict, label_to_category_id: list[int], *, score_threshold: float = 0.0,
                 backend: str = "pycocotools", keep_rows: bool = False):
        if backend not in BACKENDS:
            raise ValueError(f"metric_backend {backend!r} is not one of {BACKENDS}")
        self.coco_gt = quiet_coco(gt)
        self.keep_rows = keep_rows
        self.names = {c["id"]: c["name"] for c in gt["categories"]}
        self.label_to_category_id = np.asarray(label_to_category_id, dtype=np.int64)
        self.score_threshold = score_threshold
        self.backend = backend
        self.last_result: dict | None = None
        self.last_rows: np.ndarray | None = None  # result rows [N, 7] of the last evaluation (keep_rows)
        self._reset()

    def _reset(self):
        self._rows, self._image_ids = [], set()
        # pycocotools: match batch by batch (flat memory, same numbers); faster-coco-eval scores at the end.
        self._stream = StreamingCocoEval(self.coco_gt) if self.backend == "pycocotools" else None

    def __call__(self, eval_pred, compute_result: bool = True) -> dict:
        dets = _numpy(eval_pred.predictions)
        image_ids = _numpy(eval_pred.label_ids).reshape(-1).astype(np.int64)
        self.add(dets, image_ids)
        if not compute_result:
            return {}
        state = self._take()
        result = run_on_main_then_broadcast(lambda: self._score(*state))
        self.last_result = result
        return flat_metrics(result)

    def add(self, dets: np.ndarray, image_ids: np.ndarray) -> None:
        """dets [B, K, 6] (score, label, x, y, w, h), image_ids [B]. An image seen before is skipped: a
        distributed sampler pads the last batch with repeats, which must not be scored twice."""
        batch_rows, batch_ids = [], []
        with stage("postprocess"):
            for img_id, d in zip(image_ids, dets):
                if int(img_id) in self._image_ids:
                    continue
                d = d[d[:, DET_SCORE] > self.score_threshold]
                batch_rows.append(detection_rows(d, int(img_id), self.label_to_category_id))
                batch_ids.append(int(img_id))
                self._image_ids.add(int(img_id))
        if not batch_ids:
            return
        if self._stream is not None and is_main_process():
            with stage("cocoeval"):
                self._stream.add(np.concatenate(batch_rows), batch_ids)
        if self._stream is None or self.keep_rows:
            self._rows.extend(batch_rows)

    def compute(self) -> dict:
        """Score what was added since the last compute, and start over."""
        return self._score(*self._take())

    def _take(self):
        rows = np.concatenate(self._rows) if self._rows else np.empty((0, 7))
        state = (rows, sorted(self._image_ids), self._stream)
        self.last_rows = rows if self.keep_rows else None
        self._reset()
        return state

    def _score(self, rows: np.ndarray, image_ids: list[int], stream) -> dict:
        with stage("cocoeval"):
            if stream is not None:
                result = metrics_from(stream.finish(), self.names)
            else:
                result = coco_eval(self.coco_gt, rows, img_ids=image_ids, backend=self.backend)
        result["num_images"] = len(image_ids)
        return result


def _numpy(x) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        x = x[0] if len(x) == 1 else x
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)
