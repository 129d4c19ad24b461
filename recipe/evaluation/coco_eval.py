"""COCOeval (bbox): ground truth from a table, scoring a results list or rows, the 12 numbers + per-class AP.

Protocol (original DETR/Deformable DETR and pycocotools): top-100 detections per image, no score
threshold by default, boxes in the original image's pixels, ground truth with its own `iscrowd` and
`area`, images without annotations included.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

METRIC_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
               "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]

# Columns of a result-rows array [N, 7] (what COCO's loadRes takes as an array).
ROW_IMAGE_ID, ROW_BOX, ROW_SCORE, ROW_CATEGORY = 0, slice(1, 5), 5, 6


def quiet_coco(dataset: dict):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_eval(coco_gt, detections, *, img_ids=None, backend: str = "pycocotools", curves: bool = False) -> dict:
    """Run COCOeval (bbox). `detections`: a COCO results list or an [N, 7] array
    (image_id, x, y, w, h, score, category_id). Returns the 12 METRIC_KEYS (floats) and `per_class`
    {category name: AP (IoU .50:.95, all areas, 100 dets) or None where the class has no ground truth};
    with `curves`, also `curves` (see `metrics_from`)."""
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    if len(detections) == 0:
        # pycocotools cannot load an empty result set; with no detections every AP/AR is 0 where
        # there is ground truth (-1 where there is none, as COCOeval reports).
        has_gt = {c: bool(coco_gt.getAnnIds(catIds=[c], iscrowd=False)) for c in names}
        any_gt = any(has_gt.values())
        metrics = dict.fromkeys(METRIC_KEYS, 0.0 if any_gt else -1.0)
        metrics["per_class"] = {names[c]: (0.0 if has_gt[c] else None) for c in names}
        if curves:
            metrics["curves"] = _empty_curves(sorted(names), has_gt)
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = _evaluator(coco_gt, detections, backend)
        if img_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in img_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return metrics_from(evaluator, names, curves=curves)


def metrics_from(evaluator, names: dict[int, str], *, curves: bool = False) -> dict:
    """The 12 stats and per-class AP (IoU .50:.95, all areas, 100 dets) of a summarized COCOeval.

    With `curves`, also `curves`: {"precision": [T, R, K, A, M] array (COCOeval's eval["precision"], -1 where
    a class has no ground truth), "iou_thresholds": [T], "recall_thresholds": [R], "category_ids": [K],
    "area_ranges": [A] names, "max_dets": [M]}: what the PR curves and per-class charts are drawn from."""
    metrics = {k: float(v) for k, v in zip(METRIC_KEYS, evaluator.stats)}
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[names[cat_id]] = float(p.mean()) if p.size else None
    metrics["per_class"] = per_class
    if curves:
        p = evaluator.params
        metrics["curves"] = {"precision": np.array(precision), "iou_thresholds": np.asarray(p.iouThrs, dtype=float),
                             "recall_thresholds": np.asarray(p.recThrs, dtype=float),
                             "category_ids": [int(c) for c in p.catIds], "area_ranges": list(p.areaRngLbl),
                             "max_dets": [int(m) for m in p.maxDets]}
    return metrics


def _empty_curves(cat_ids: list[int], has_gt: dict[int, bool]) -> dict:
    """The curves of a result set without detections: precision 0 where there is ground truth, else -1."""
    from pycocotools.cocoeval import Params

    p = Params(iouType="bbox")
    precision = -np.ones((len(p.iouThrs), len(p.recThrs), len(cat_ids), len(p.areaRng), len(p.maxDets)))
    for k, c in enumerate(cat_ids):
        if has_gt[c]:
            precision[:, :, k] = 0.0
    return {"precision": precision, "iou_thresholds": np.asarray(p.iouThrs, dtype=float),
            "recall_thresholds": np.asarray(p.recThrs, dtype=float), "category_ids": list(cat_ids),
            "area_ranges": list(p.areaRngLbl), "max_dets": [int(m) for m in p.maxDets]}


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
    """COCO ground truth (dict) from a detection table: sanitized boxes, the file's `area` and `iscrowd`, and the
    categories' `supercategory` where they have one (the error breakdown's "similar class")."""
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
            "categories": [{k: c[k] for k in ("id", "name", "supercategory") if k in c} for c in categories]}


def format_per_class(metrics: dict) -> str:
    rows = metrics["per_class"]
    width = max([len(n) for n in rows] + [5])
    lines = [f"{'class':<{width}}  AP"] + [f"{n:<{width}}  {'-' if ap is None else f'{ap:.4f}'}"
                                          for n, ap in rows.items()]
    return "\n".join(lines)
