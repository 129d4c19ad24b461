"""COCO evaluation: post-processing of model outputs, the compute_metrics hook, and results-file scoring.

Protocol (original DETR/Deformable DETR and pycocotools): sigmoid, top-100 over queries x classes, no
score threshold by default, boxes in the original image's pixels, ground truth with its own `iscrowd`
and `area`, images without annotations included.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

from .boxes import cxcywh_norm_to_xywh_abs
from .cocoeval_stream import StreamingCocoEval

METRIC_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
               "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]

# Models whose classifier is a softmax with a trailing "no object" class (the others use sigmoid/focal).
SOFTMAX_MODEL_TYPES = {"detr", "table-transformer", "yolos"}


def postprocess_detections(logits: torch.Tensor, pred_boxes: torch.Tensor, orig_sizes_hw: torch.Tensor,
                           top_k: int = 100, softmax: bool = False) -> torch.Tensor:
    """Top-k detections per image over queries x classes.

    logits [B, Q, C] (C + 1 with `softmax`), pred_boxes [B, Q, 4] `cxcywh_norm`, orig_sizes_hw [B, 2]
    -> [B, K, 6] float32 rows (score, label, x, y, w, h) with boxes `xywh_abs` in the original image,
    K = min(top_k, Q x C), sorted by score.
    """
    logits, pred_boxes = logits.float(), pred_boxes.float()
    if softmax:
        prob = logits.softmax(-1)[..., :-1]
    else:
        prob = logits.sigmoid()
    batch, queries, classes = prob.shape
    k = min(top_k, queries * classes)
    scores, index = prob.reshape(batch, -1).topk(k, dim=1)
    query, label = index // classes, index % classes
    boxes = pred_boxes.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
    boxes = cxcywh_norm_to_xywh_abs(boxes, orig_sizes_hw)
    return torch.cat([scores.unsqueeze(-1), label.unsqueeze(-1).float(), boxes], dim=-1)


def _quiet_coco(dataset: dict):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_eval(coco_gt, detections, img_ids=None, backend: str = "pycocotools") -> dict:
    """Run COCOeval (bbox). `detections`: a COCO results list or an [N, 7] array
    (image_id, x, y, w, h, score, category_id). Returns the 12 METRIC_KEYS (floats) and `per_class`
    {category name: AP (IoU .50:.95, all areas, 100 dets) or None where the class has no ground truth}."""
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    if len(detections) == 0:
        # pycocotools cannot load an empty result set; with no detections every AP/AR is 0 where
        # there is ground truth (-1 where there is none, as COCOeval reports).
        has_gt = {c: bool(coco_gt.getAnnIds(catIds=[c], iscrowd=False)) for c in names}
        any_gt = any(has_gt.values())
        metrics = {k: 0.0 if any_gt else -1.0 for k in METRIC_KEYS}
        metrics["per_class"] = {names[c]: (0.0 if has_gt[c] else None) for c in names}
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = _evaluator(coco_gt, detections, backend)
        if img_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in img_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return metrics_from(evaluator, names)


def metrics_from(evaluator, names: dict[int, str]) -> dict:
    """The 12 stats and per-class AP (IoU .50:.95, all areas, 100 dets) of a summarized COCOeval."""
    metrics = {k: float(v) for k, v in zip(METRIC_KEYS, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean()) if p.size else None
    metrics["per_class"] = per_class
    return metrics


BACKENDS = ("pycocotools", "faster_coco_eval")


def _evaluator(coco_gt, detections, backend: str):
    """A COCOeval (bbox) of the chosen backend; faster-coco-eval gives pycocotools' numbers, faster."""
    if backend == "pycocotools":
        from pycocotools.cocoeval import COCOeval

        return COCOeval(coco_gt, coco_gt.loadRes(detections), iouType="bbox")
    if backend != "faster_coco_eval":
        raise ValueError(f"metric_backend {backend!r} is not one of {BACKENDS}")
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError:
        raise ImportError("metric_backend faster_coco_eval needs the optional extra: "
                          "pip install -e '.[faster-coco-eval]'") from None
    gt = COCO()
    gt.dataset = coco_gt.dataset
    gt.createIndex()
    return COCOeval_faster(gt, gt.loadRes(detections), iouType="bbox")


def gt_from_table(dataset, categories: list[dict]) -> dict:
    """COCO ground truth (dict) from a detection table: sanitized boxes, the file's `area` and `iscrowd`."""
    images, annotations = [], []
    cat_ids = [c["id"] for c in categories]
    for row in dataset.select_columns(["image_id", "width", "height", "objects"]):
        images.append({"id": row["image_id"], "width": row["width"], "height": row["height"]})
        objs = row["objects"]
        for ann_id, bbox, cat, area, crowd in zip(objs["id"], objs["bbox"], objs["category"], objs["area"],
                                                  objs["iscrowd"]):
            annotations.append({"id": len(annotations) + 1, "source_id": ann_id, "image_id": row["image_id"],
                                "category_id": cat_ids[cat], "bbox": list(bbox), "area": area,
                                "iscrowd": int(crowd)})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": c["id"], "name": c["name"]} for c in categories]}


class CocoDetectionMetrics:
    """compute_metrics for `batch_eval_metrics=True`: keeps only the kept detections between batches.

    Expects `EvalPrediction(predictions=[B, K, 6] (score, label, xywh_abs), label_ids=[B] image ids)`, as
    returned by `DetectionTrainer.prediction_step`. Labels are mapped back to the dataset's category ids.
    """

    def __init__(self, gt: dict, label_to_category_id: list[int], score_threshold: float = 0.0,
                 backend: str = "pycocotools", keep_rows: bool = False):
        if backend not in BACKENDS:
            raise ValueError(f"metric_backend {backend!r} is not one of {BACKENDS}")
        self.coco_gt = _quiet_coco(gt)
        self.keep_rows = keep_rows
        self.names = {c["id"]: c["name"] for c in gt["categories"]}
        self.label_to_category_id = np.asarray(label_to_category_id, dtype=np.int64)
        self.score_threshold = score_threshold
        self.backend = backend
        self.last_result: dict | None = None
        self.last_rows: np.ndarray | None = None  # (image_id, x, y, w, h, score, category_id) of the last eval
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
        result = _on_main_process_then_broadcast(lambda: self._score(*state))
        self.last_result = result
        flat = {k: result[k] for k in METRIC_KEYS}
        flat.update({f"map_{name}": ap for name, ap in result["per_class"].items() if ap is not None})
        return flat

    def add(self, dets: np.ndarray, image_ids: np.ndarray) -> None:
        """dets [B, K, 6] (score, label, x, y, w, h), image_ids [B]. An image seen before is skipped: a
        distributed sampler pads the last batch with repeats, which must not be scored twice."""
        batch_rows, batch_ids = [], []
        for img_id, d in zip(image_ids, dets):
            if int(img_id) in self._image_ids:
                continue
            d = d[d[:, 0] > self.score_threshold]
            rows = np.empty((len(d), 7), dtype=np.float64)
            rows[:, 0] = img_id
            rows[:, 1:5] = d[:, 2:6]
            rows[:, 5] = d[:, 0]
            rows[:, 6] = self.label_to_category_id[d[:, 1].astype(np.int64)]
            batch_rows.append(rows)
            batch_ids.append(int(img_id))
            self._image_ids.add(int(img_id))
        if not batch_ids:
            return
        if self._stream is not None and _is_main_process():
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
        if stream is not None:
            result = metrics_from(stream.finish(), self.names)
        else:
            result = coco_eval(self.coco_gt, rows, img_ids=image_ids, backend=self.backend)
        result["num_images"] = len(image_ids)
        return result


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _on_main_process_then_broadcast(compute):
    """Every rank holds the gathered detections; score once (rank 0) and share the numbers."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return compute()
    box = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _numpy(x) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        x = x[0] if len(x) == 1 else x
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def format_per_class(metrics: dict) -> str:
    rows = metrics["per_class"]
    width = max([len(n) for n in rows] + [5])
    lines = [f"{'class':<{width}}  AP"] + [f"{n:<{width}}  {'-' if ap is None else f'{ap:.4f}'}"
                                          for n, ap in rows.items()]
    return "\n".join(lines)
