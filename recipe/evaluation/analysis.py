"""The numbers behind the plots: PR curves, per-class AP, confusion matrix, COCO error breakdown, run history.

Every function returns plain JSON-ready data (lists, floats, names); `plots.py` draws it and saves it beside
the figure. Detections are result rows [N, 7] (columns named in `coco_eval`: image_id, x, y, w, h, score,
category_id; boxes `xywh_abs` in the original image, the dataset's category ids).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from recipe.evaluation.coco_eval import ROW_BOX, ROW_CATEGORY, ROW_IMAGE_ID, ROW_SCORE, quiet_coco

BACKGROUND = "background"


def _class_curves(precision: np.ndarray, k: int, iou_thresholds: np.ndarray):
    """-> (precision at IoU .5 [R], precision averaged over IoU .5:.95 [R], AP) of class k (all areas, 100 dets),
    or (None, None, None) where the class has no ground truth (COCOeval marks it -1). AP is computed exactly as
    `coco_eval.metrics_from` does, so the two agree to the last bit."""
    p = precision[:, :, k, 0, -1]  # [T, R]
    if (p < 0).all():
        return None, None, None
    t50 = int(np.flatnonzero(np.isclose(iou_thresholds, 0.5))[0])
    return p[t50], p.mean(axis=0), float(p[p > -1].mean())


def pr_curves(curves: dict, names: dict[int, str]) -> dict:
    """COCOeval's precision (`coco_eval(..., curves=True)["curves"]`) -> per class the PR curve at IoU .5 and
    averaged over IoU .5:.95, all areas, 100 detections; `ap` / `ap_50` are their means (COCO's AP, AP50)."""
    out = {"recall": [float(r) for r in curves["recall_thresholds"]], "classes": {}}
    for k, cat_id in enumerate(curves["category_ids"]):
        p50, p_all, ap = _class_curves(curves["precision"], k, curves["iou_thresholds"])
        out["classes"][names[cat_id]] = None if p50 is None else {
            "ap": ap, "ap_50": float(p50.mean()),
            "precision_50": [float(v) for v in p50], "precision_50_95": [float(v) for v in p_all]}
    return out


def per_class_ap(curves: dict, names: dict[int, str], coco_gt) -> dict:
    """Per class: AP (IoU .5:.95), AP50, AP75 (all areas, 100 dets; None without ground truth) and the count
    of non-crowd ground-truth boxes."""
    iou = curves["iou_thresholds"]
    t75 = int(np.flatnonzero(np.isclose(iou, 0.75))[0])
    rows = {"classes": [], "ap": [], "ap_50": [], "ap_75": [], "num_gt": []}
    for k, cat_id in enumerate(curves["category_ids"]):
        p50, _, ap = _class_curves(curves["precision"], k, iou)
        rows["classes"].append(names[cat_id])
        rows["ap"].append(ap)
        rows["ap_50"].append(None if p50 is None else float(p50.mean()))
        rows["ap_75"].append(None if p50 is None else float(curves["precision"][t75, :, k, 0, -1].mean()))
        rows["num_gt"].append(len(coco_gt.getAnnIds(catIds=[cat_id], iscrowd=False)))
    return rows


def _box_iou(dets_xywh: np.ndarray, gts_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """[D, G] IoU as COCOeval computes it (pycocotools' maskUtils.iou: against a crowd box, intersection over
    the detection's area)."""
    from pycocotools import mask as mask_utils

    if not len(dets_xywh) or not len(gts_xywh):
        return np.zeros((len(dets_xywh), len(gts_xywh)))
    return np.asarray(mask_utils.iou(dets_xywh.astype(np.float64), gts_xywh.astype(np.float64),
                                     crowd.astype(np.uint8).tolist())).reshape(len(dets_xywh), len(gts_xywh))


def confusion_matrix(coco_gt, rows: np.ndarray, *, iou_threshold: float = 0.5, score_threshold: float = 0.5) -> dict:
    """Classes + background, from detections scoring above `score_threshold`.

    Per image, detections in descending score order are matched greedily to the unmatched non-crowd ground
    truth box of highest IoU >= `iou_threshold`, whatever the classes (so a class confusion shows as one
    off-diagonal count, not a miss plus a false positive). Matched: counts[true class, predicted class];
    unmatched detection: counts[background, predicted] (unless it lies on a crowd region, IoU as COCOeval
    computes it, then it is not counted); unmatched ground truth: counts[true class, background].
    `normalized`: each row divided by its sum (the row of a class: where its objects went; the background
    row: how the false positives split over the predicted classes).
    """
    cat_ids = sorted(coco_gt.getCatIds())
    index = {c: i for i, c in enumerate(cat_ids)}
    bg = len(cat_ids)
    counts = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    rows = rows[rows[:, ROW_SCORE] > score_threshold] if len(rows) else np.zeros((0, 7))
    by_image = {}
    for r in rows[np.argsort(-rows[:, ROW_SCORE], kind="stable")]:
        by_image.setdefault(int(r[ROW_IMAGE_ID]), []).append(r)
    for img_id in coco_gt.getImgIds():
        anns = coco_gt.imgToAnns.get(img_id, [])
        gts = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
        gt_class = [index[a["category_id"]] for a in anns]
        dets = np.array(by_image.get(img_id, []), dtype=np.float64).reshape(-1, 7)
        ious = _box_iou(dets[:, ROW_BOX], gts, crowd)
        matched = crowd.copy()  # crowd regions are never "missed"
        for d, det in enumerate(dets):
            pred = index[int(det[ROW_CATEGORY])]
            free = np.where(~matched & (ious[d] >= iou_threshold))[0]
            if len(free):
                g = free[np.argmax(ious[d, free])]
                matched[g] = True
                counts[gt_class[g], pred] += 1
            elif not (crowd & (ious[d] >= iou_threshold)).any():
                counts[bg, pred] += 1
        for g in np.where(~matched)[0]:
            counts[gt_class[g], bg] += 1
    totals = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    return {"classes": [names[c] for c in cat_ids] + [BACKGROUND], "rows": "true class", "columns": "predicted class",
            "iou_threshold": iou_threshold, "score_threshold": score_threshold, "counts": counts.tolist(),
            "normalized": normalized.tolist()}


def best_f1_threshold(coco_gt, rows: np.ndarray, *, iou_threshold: float = 0.5) -> dict:
    """The score threshold that maximises F1 over all classes on an evaluation's detections (what a picture or an
    application should keep), with its precision, recall and the highest score seen.

    Matching as COCOeval's at one IoU: per image and class, detections in descending score order take the unmatched
    non-crowd ground truth box of highest IoU >= `iou_threshold`; a detection that matches nothing but lies on a
    crowd region is ignored (neither right nor wrong). Keeping the k best detections gives F1 = 2 TP / (k + P), P
    the non-crowd boxes; the threshold returned sits halfway between the k-th score and the next lower one, so
    `score > threshold` keeps exactly those k (0 when all are kept). `threshold` is None without detections or
    ground truth."""
    rows = rows if len(rows) else np.zeros((0, 7))
    positives = sum(1 for a in coco_gt.dataset.get("annotations", []) if not a.get("iscrowd", 0))
    scored = []  # (score, 1 if a true positive else 0)
    for img_id in coco_gt.getImgIds():
        anns = coco_gt.imgToAnns.get(img_id, [])
        mine = rows[rows[:, ROW_IMAGE_ID] == img_id]
        for cat_id in np.unique(mine[:, ROW_CATEGORY]):
            dets = mine[mine[:, ROW_CATEGORY] == cat_id]
            dets = dets[np.argsort(-dets[:, ROW_SCORE], kind="stable")]
            same = [a for a in anns if a["category_id"] == int(cat_id)]
            gts = np.array([a["bbox"] for a in same], dtype=np.float64).reshape(-1, 4)
            crowd = np.array([bool(a.get("iscrowd", 0)) for a in same], dtype=bool)
            ious = _box_iou(dets[:, ROW_BOX], gts, crowd)
            matched = np.zeros(len(same), dtype=bool)
            for d, det in enumerate(dets):
                free = np.where(~matched & ~crowd & (ious[d] >= iou_threshold))[0]
                if len(free):
                    matched[free[np.argmax(ious[d, free])]] = True
                    scored.append((float(det[ROW_SCORE]), 1))
                elif not (crowd & (ious[d] >= iou_threshold)).any():
                    scored.append((float(det[ROW_SCORE]), 0))
    result = {"threshold": None, "f1": 0.0, "precision": 0.0, "recall": 0.0, "iou_threshold": iou_threshold,
              "max_score": max((s for s, _ in scored), default=None), "detections": len(scored),
              "ground_truth_boxes": positives}
    if not scored or not positives:
        return result
    scores = np.array([s for s, _ in scored])
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], np.cumsum(np.array([t for _, t in scored])[order])
    kept = np.arange(1, len(scores) + 1)
    f1 = 2 * tp / (kept + positives)
    # Only where the next score is lower can a threshold keep exactly the first k.
    cut = np.append(scores[1:] < scores[:-1], True)
    k = int(np.argmax(np.where(cut, f1, -1.0)))
    threshold = (scores[k] + scores[k + 1]) / 2 if k + 1 < len(scores) else 0.0
    return {**result, "threshold": float(threshold), "f1": float(f1[k]), "precision": float(tp[k] / kept[k]),
            "recall": float(tp[k] / positives)}


# The COCO toolkit's analyze() (cocodataset.org/#detection-eval "Analysis"; cocoapi MatlabAPI/CocoEval.m
# `analyze`, after Hoiem et al., "Diagnosing Error in Object Detectors"): PR curves of each class under ever more
# permissive settings; the gap between two successive ones is the share of one error type.
ANALYZE_STAGES = ["C75", "C50", "Loc", "Sim", "Oth", "BG", "FN"]
ERROR_TYPES = {"localisation": ("C50", "Loc"), "similar class": ("Loc", "Sim"), "other class": ("Sim", "Oth"),
               "background": ("Oth", "BG"), "missed": ("BG", "FN")}


def _cocoeval_with_ignored(coco_gt, coco_dt):
    """A pycocotools COCOeval that honours an `analyze_ignore` flag on ground truth: pycocotools derives a box's
    ignore flag from `iscrowd` alone (COCOeval._prepare), and setting iscrowd would also change the IoU."""
    from pycocotools.cocoeval import COCOeval

    class _COCOevalIgnoring(COCOeval):
        def _prepare(self):
            super()._prepare()
            for gts in self._gts.values():
                for g in gts:
                    if g.get("analyze_ignore"):
                        g["ignore"] = 1

    return _COCOevalIgnoring(coco_gt, coco_dt, iouType="bbox")


def _accumulated_precision(coco_gt, rows: np.ndarray, cat_ids: list[int], iou_thresholds: list[float]) -> np.ndarray:
    """-> precision [T, R, K] (all areas, 100 detections; -1 where a class has no ground truth)."""
    from pycocotools.cocoeval import Params

    if not len(rows):  # pycocotools cannot load an empty result set: precision 0 where there is ground truth
        has_gt = [bool(coco_gt.getAnnIds(catIds=[c], iscrowd=False)) for c in cat_ids]
        empty = np.zeros((len(iou_thresholds), len(Params(iouType="bbox").recThrs), len(cat_ids)))
        empty[:, :, ~np.asarray(has_gt, dtype=bool)] = -1.0
        return empty
    with contextlib.redirect_stdout(io.StringIO()):
        ev = _cocoeval_with_ignored(coco_gt, coco_gt.loadRes(rows))
        ev.params.imgIds = sorted(coco_gt.getImgIds())
        ev.params.catIds, ev.params.iouThrs = list(cat_ids), np.asarray(iou_thresholds, dtype=float)
        ev.params.maxDets, ev.params.areaRng, ev.params.areaRngLbl = [100], [[0, 1e10]], ["all"]
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, 0]


def _relabelled_gt(coco_gt, cat_id: int, others: set[int]):
    """The ground truth with the boxes of `others` turned into ignored boxes of `cat_id`."""
    anns = [dict(a, category_id=cat_id, analyze_ignore=1) if a["category_id"] in others else a
            for a in coco_gt.dataset["annotations"]]
    return quiet_coco({**coco_gt.dataset, "annotations": anns})


def coco_error_breakdown(coco_gt, rows: np.ndarray, *, supercategories: dict[int, str] | None = None) -> dict:
    """The analyze() PR curves (all areas, 100 detections) of each class and their mean over classes with ground
    truth, with the AP of each stage and the error shares between successive stages:

    C75, C50: PR at IoU .75, .5. Loc: IoU .1 (localisation errors forgiven; duplicates still count). Sim: also
    forgiven, detections on objects of another class of the same supercategory. Oth: on objects of any other class.
    BG: also the background false positives removed (precision 1 up to Oth's highest recall). FN: the remaining
    misses removed (precision 1). `supercategories`: category id -> name (default: the GT's `supercategory`; a
    class without one is its own supercategory, so its Sim equals Loc).
    """
    cats = coco_gt.dataset["categories"]
    supers = supercategories or {c["id"]: c.get("supercategory") for c in cats}
    cat_ids = sorted(coco_gt.getCatIds())
    names = {c["id"]: c["name"] for c in cats}
    base = _accumulated_precision(coco_gt, rows, cat_ids, [0.75, 0.5, 0.1])  # [3, R, K]
    per_class, curves = {}, []
    for k, cat_id in enumerate(cat_ids):
        if (base[:, :, k] < 0).all():
            per_class[names[cat_id]] = None
            continue
        mine = rows[rows[:, ROW_CATEGORY] == cat_id] if len(rows) else rows
        similar = {c for c in cat_ids if c != cat_id and supers.get(c) is not None and supers.get(c) == supers[cat_id]}
        sim = _accumulated_precision(_relabelled_gt(coco_gt, cat_id, similar), mine, [cat_id], [0.1])[0, :, 0]
        oth = _accumulated_precision(_relabelled_gt(coco_gt, cat_id, set(cat_ids) - {cat_id}), mine, [cat_id],
                                     [0.1])[0, :, 0]
        stages = np.maximum(np.vstack([base[:, :, k], sim, oth]), 0.0)  # no detections at all: -1 -> 0
        stages = np.vstack([stages, (stages[4] > 0).astype(float), np.ones_like(stages[0])])  # BG, FN
        curves.append(stages)
        per_class[names[cat_id]] = {s: float(v) for s, v in zip(ANALYZE_STAGES, stages.mean(axis=1))}
    mean_curves = np.mean(curves, axis=0) if curves else np.zeros((len(ANALYZE_STAGES), base.shape[1]))
    ap = {s: float(v) for s, v in zip(ANALYZE_STAGES, mean_curves.mean(axis=1))}
    return {"stages": ANALYZE_STAGES, "ap": ap,
            "errors": {name: ap[b] - ap[a] for name, (a, b) in ERROR_TYPES.items()},
            "recall": np.linspace(0, 1, base.shape[1]).tolist(),
            "curves": {s: c.tolist() for s, c in zip(ANALYZE_STAGES, mean_curves)}, "per_class": per_class}


def training_history(log_history: list[dict]) -> dict:
    """trainer_state's log_history -> {"train": {"step": [...], "loss": [...], "learning_rate": [...], <loss terms>},
    "eval": {"step": [...], "eval_map": [...], ...}} (a series per key; None where a record lacks the key)."""
    train = [r for r in log_history if "loss" in r]
    evals = [r for r in log_history if "eval_map" in r or "eval_loss" in r]

    def series(records, keys):
        return {k: [r.get(k) for r in records] for k in ["step", *keys]}

    train_keys = sorted({k for r in train for k in r if k.startswith("loss")
                        or k in ("learning_rate", "learning_rate_backbone", "grad_norm")}
                        - {"step"})
    eval_keys = [k for k in ("eval_map", "eval_map_50", "eval_map_75", "eval_loss") if any(k in r for r in evals)]
    return {"train": series(train, train_keys), "eval": series(evals, eval_keys)}
