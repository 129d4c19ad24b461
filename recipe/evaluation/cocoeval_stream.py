"""COCOeval (bbox) fed batch by batch, with pycocotools' numbers and memory that stays flat.

pycocotools keeps a dict per detection and per (image, category, area range) until the end: several
hundred KB per image at 100 detections. Matching a detection only involves its own image, so each
batch is matched at once by pycocotools' own `COCOeval.evaluate` and reduced to what `accumulate`
reads: per detection its score, image, rank in its image, and two bit-vectors over the IoU thresholds
(matched, ignored); per (category, area range) the count of non-ignored ground truth. `finish()`
then runs the accumulate step (the algorithm of pycocotools' `COCOeval.accumulate`) and pycocotools'
own `summarize`, so the 12 numbers are the ones one COCOeval over all images gives.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.cocoeval import COCOeval, Params


class StreamingCocoEval:
    def __init__(self, coco_gt):
        self.coco_gt = coco_gt
        self.params = Params(iouType="bbox")
        self.params.catIds = sorted(coco_gt.getCatIds())
        shape = (len(self.params.catIds), len(self.params.areaRng))
        # Growable buffers, not per-batch arrays: small objects kept alive between batches would pin the
        # allocator's pages around each batch's short-lived COCOeval objects, and memory would creep up.
        self._dets = {}  # k -> score, image_id and rank in its image of each detection
        self._bits = {}  # (k, a) -> matched and ignored [T, D], packed to bits along T
        self._npig = np.zeros(shape, dtype=np.int64)
        self._present = np.zeros(shape, dtype=bool)
        self._image_ids: set[int] = set()

    def add(self, rows: np.ndarray, image_ids) -> None:
        """rows [N, 7] (image_id, x, y, w, h, score, category_id) of exactly the images `image_ids`."""
        image_ids = sorted({int(i) for i in image_ids} - self._image_ids)
        if not image_ids:
            return
        self._image_ids.update(image_ids)
        rows = rows[np.isin(rows[:, 0].astype(np.int64), image_ids)] if len(rows) else rows
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = _results(self.coco_gt, rows) if len(rows) else _empty_results(self.coco_gt)
            evaluator = ListMatchingCOCOeval(self.coco_gt, coco_dt, iouType="bbox")
            evaluator.params.imgIds = image_ids
            evaluator.params.catIds = self.params.catIds
            evaluator.evaluate()
        num_areas, num_images = len(self.params.areaRng), len(image_ids)
        batch = {}
        for n, e in enumerate(evaluator.evalImgs):
            if e is None:
                continue
            k, a = divmod(n // num_images, num_areas)
            self._present[k, a] = True
            self._npig[k, a] += int(np.count_nonzero(np.asarray(e["gtIgnore"]) == 0))
            if len(e["dtScores"]):
                batch.setdefault((k, a), []).append(e)
        # One set of arrays per batch: scores, images and ranks per category (a category's detections are the
        # same in every area range), matched / ignored bits per (category, area range).
        for (k, a), evals in batch.items():
            if a == 0:
                buffers = self._dets.setdefault(k, (_Buffer(np.float64), _Buffer(np.int64), _Buffer(np.int16)))
                buffers[0].extend(np.concatenate([e["dtScores"] for e in evals]))
                buffers[1].extend(np.concatenate([np.full(len(e["dtScores"]), e["image_id"]) for e in evals]))
                buffers[2].extend(np.concatenate([np.arange(len(e["dtScores"])) for e in evals]))
            bits = self._bits.setdefault((k, a), (_Buffer(np.uint8, rows=2), _Buffer(np.uint8, rows=2)))
            matched = np.concatenate([np.asarray(e["dtMatches"]) != 0 for e in evals], axis=1)
            bits[0].extend(np.packbits(matched, axis=0))
            bits[1].extend(np.packbits(np.concatenate([np.asarray(e["dtIgnore"], dtype=bool) for e in evals], axis=1),
                                       axis=0))

    def finish(self):
        """-> a pycocotools COCOeval whose `eval` and `stats` are filled (as after accumulate + summarize)."""
        p = self.params
        p.imgIds = sorted(self._image_ids)
        all_ids = np.asarray(p.imgIds, dtype=np.int64)
        T, R, K, A, M = len(p.iouThrs), len(p.recThrs), len(p.catIds), len(p.areaRng), len(p.maxDets)
        precision, recall, scores = -np.ones((T, R, K, A, M)), -np.ones((T, K, A, M)), -np.ones((T, R, K, A, M))
        for (k, a), present in np.ndenumerate(self._present):
            npig = self._npig[k, a]
            if not present or npig == 0:
                continue
            dets = self._dets.get(k, (_Buffer(np.float64), _Buffer(np.int64), _Buffer(np.int16)))
            bits = self._bits.get((k, a), (_Buffer(np.uint8, rows=2), _Buffer(np.uint8, rows=2)))
            score, image, rank = (b.view() for b in dets)
            matched, ignored = (b.view() for b in bits)
            matched = np.unpackbits(matched, axis=0, count=T).astype(bool)  # [T, N]
            ignored = np.unpackbits(ignored, axis=0, count=T).astype(bool)
            pos = np.searchsorted(all_ids, image)  # the image's place in id order
            for m, max_det in enumerate(p.maxDets):
                keep = rank < max_det
                # pycocotools concatenates images in id order, each in score order, then sorts by score with
                # a stable mergesort: the same order as this lexsort.
                order = np.lexsort((rank[keep], pos[keep], -score[keep]))
                sorted_scores = score[keep][order]
                dtm, dtig = matched[:, keep][:, order], ignored[:, keep][:, order]
                (precision[:, :, k, a, m], recall[:, k, a, m],
                 scores[:, :, k, a, m]) = _precision_recall(dtm, dtig, sorted_scores, npig, p.recThrs)
        evaluator = COCOeval(iouType="bbox")
        evaluator.params = p
        evaluator.eval = {"params": p, "counts": [T, R, K, A, M], "precision": precision, "recall": recall,
                          "scores": scores}
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.summarize()
        return evaluator


def _precision_recall(dtm: np.ndarray, dtig: np.ndarray, sorted_scores: np.ndarray, npig: int,
                      rec_thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (category, area range, max detections) cell of pycocotools' `accumulate` for all IoU thresholds at
    once: matched / ignored [T, N] of the detections in score order -> precision [T, R], recall [T],
    scores [T, R]. The same float operations as pycocotools, vectorised."""
    T, R = dtm.shape[0], len(rec_thrs)
    tp = np.cumsum(dtm & ~dtig, axis=1).astype(float)
    fp = np.cumsum(~dtm & ~dtig, axis=1).astype(float)
    nd = tp.shape[1]
    rc = tp / npig
    pr = tp / (fp + tp + np.spacing(1))
    # precision envelope: pycocotools' backward loop `pr[i-1] = max(pr[i-1], pr[i])` is a running maximum from
    # the end (max is exact: the same numbers)
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    recall = rc[:, -1] if nd else np.zeros(T)
    precision, scores = np.zeros((T, R)), np.zeros((T, R))
    for t in range(T):
        # pycocotools stops at the first recall threshold beyond the last detection; the positions only grow
        # (rc is non-decreasing), so the ones before it are exactly those < nd
        inds = np.searchsorted(rc[t], rec_thrs, side="left")
        valid = inds < nd
        precision[t, valid], scores[t, valid] = pr[t, inds[valid]], sorted_scores[inds[valid]]
    return precision, recall, scores


class ListMatchingCOCOeval(COCOeval):
    """pycocotools' COCOeval with a faster `evaluateImg` (the same matches)."""

    def evaluateImg(self, imgId, catId, aRng, maxDet):
        """pycocotools' `COCOeval.evaluateImg` (bbox, useCats), the same algorithm step for step, with the greedy
        matching loop over Python lists instead of numpy element access, and a detection below the threshold
        with every box skipped before the scan (together they took COCOeval from 13% to 6% of the demo model's
        evaluation, benchmarks/eval_throughput.py). Same comparisons on the same float64 values, so the same
        matches."""
        p = self.params
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return None
        ignore = [1 if (g["ignore"] or g["area"] < aRng[0] or g["area"] > aRng[1]) else 0 for g in gt]
        gtind = np.argsort(ignore, kind="mergesort")
        gt = [gt[i] for i in gtind]
        gt_ignore = [ignore[i] for i in gtind]
        dtind = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in dtind[0:maxDet]]
        crowd = [int(g["iscrowd"]) for g in gt]
        ious = self.ious[imgId, catId][:, gtind] if len(self.ious[imgId, catId]) > 0 else self.ious[imgId, catId]
        T, G, D = len(p.iouThrs), len(gt), len(dt)
        gtm, dtm, dtIg = np.zeros((T, G)), np.zeros((T, D)), np.zeros((T, D))
        if len(ious) != 0:
            rows, gt_ids, dt_ids = ious.tolist(), [g["id"] for g in gt], [d["id"] for d in dt]
            best = [max(row) for row in rows]  # a detection below the threshold with every gt matches none
            for tind, t in enumerate(p.iouThrs.tolist()):
                matched = [0] * G  # the detection id each gt is matched to (pycocotools' gtm row)
                threshold = min([t, 1 - 1e-10])
                for dind in range(D):
                    if best[dind] < threshold:
                        continue
                    row, iou, m = rows[dind], threshold, -1
                    for gind in range(G):
                        if matched[gind] > 0 and not crowd[gind]:
                            continue
                        if m > -1 and gt_ignore[m] == 0 and gt_ignore[gind] == 1:
                            break
                        if row[gind] < iou:
                            continue
                        iou, m = row[gind], gind
                    if m == -1:
                        continue
                    dtIg[tind, dind], dtm[tind, dind] = gt_ignore[m], gt_ids[m]
                    matched[m] = dt_ids[dind]
                gtm[tind] = matched
        a = np.array([d["area"] < aRng[0] or d["area"] > aRng[1] for d in dt]).reshape((1, len(dt)))
        dtIg = np.logical_or(dtIg, np.logical_and(dtm == 0, np.repeat(a, T, 0)))
        return {"image_id": imgId, "category_id": catId, "aRng": aRng, "maxDet": maxDet,
                "dtIds": [d["id"] for d in dt], "gtIds": [g["id"] for g in gt], "dtMatches": dtm, "gtMatches": gtm,
                "dtScores": [d["score"] for d in dt], "gtIgnore": np.array(gt_ignore), "dtIgnore": dtIg}


class _Buffer:
    """An array that grows along its last axis by doubling."""

    def __init__(self, dtype, rows: int | None = None):
        self._shape = () if rows is None else (rows,)
        self._data = np.zeros(self._shape + (0,), dtype=dtype)
        self._n = 0

    def extend(self, values: np.ndarray) -> None:
        m = values.shape[-1]
        if self._n + m > self._data.shape[-1]:
            grown = np.zeros(self._shape + (max(2 * self._data.shape[-1], self._n + m, 1024),), self._data.dtype)
            grown[..., :self._n] = self._data[..., :self._n]
            self._data = grown
        self._data[..., self._n:self._n + m] = values
        self._n += m

    def view(self) -> np.ndarray:
        return self._data[..., :self._n]


def _results(coco_gt, rows: np.ndarray):
    """What `coco_gt.loadRes(rows)` builds for bbox results, with the same values (each field as loadRes sets
    it: area = w x h, ids 1..N in row order, iscrowd 0), from Python floats in one pass: loadRes's per-field
    arithmetic on numpy scalars cost three times the matching itself. No `segmentation` (bbox IoU never
    reads it)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                    "annotations": [{"image_id": int(image_id), "bbox": [x, y, w, h], "score": score,
                                     "category_id": int(category), "area": w * h, "id": n, "iscrowd": 0}
                                    for n, (image_id, x, y, w, h, score, category) in enumerate(rows.tolist(), 1)]}
    coco.createIndex()
    return coco


def _empty_results(coco_gt):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": list(coco_gt.dataset["images"]), "categories": list(coco_gt.dataset["categories"]),
                    "annotations": []}
    coco.createIndex()
    return coco
