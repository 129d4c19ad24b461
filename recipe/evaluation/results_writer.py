"""The COCO results file: the one writer of detections as `[{image_id, category_id, bbox, score}]` (bbox `xywh_abs`),
for `evaluate --predictions-out` and `predict`, and the reader's match of `file_name` entries to ground-truth ids.

Rounding: none. Each number is written as the float64 the evaluation holds (the model's float32 outputs, widened
exactly) in Python's shortest round-trip form, so the file reads back to the very same numbers and scoring it
(`evaluate --predictions`) gives exactly the figures of the run that wrote it. Rounded scores (an earlier writer kept
5 decimals) tie detections that the evaluation ranked apart, and COCOeval then orders the tied ones by position.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from recipe.core.errors import DataError
from recipe.evaluation.coco_eval import ROW_BOX, ROW_CATEGORY, ROW_IMAGE_ID, ROW_SCORE
from recipe.models.postprocess import DET_BOX, DET_LABEL, DET_SCORE


def coco_result(image_id, category_id, box_xywh_abs, score, **extra) -> dict:
    """One results entry: `extra` (e.g. `file_name`) after the image id; numbers unrounded (see the module)."""
    return {"image_id": image_id, **extra, "category_id": int(category_id),
            "bbox": [float(v) for v in box_xywh_abs], "score": float(score)}


def results_from_rows(rows: np.ndarray, image_ids: dict | None = None) -> list[dict]:
    """Evaluation rows [N, 7] (image_id, x, y, w, h, score, category_id: `coco_eval.ROW_*`) -> results entries.
    `image_ids`: the table's numeric image id -> the id to write (the file's own, e.g. a string); default int."""
    return [coco_result(int(r[ROW_IMAGE_ID]) if image_ids is None else image_ids[int(r[ROW_IMAGE_ID])],
                        r[ROW_CATEGORY], r[ROW_BOX], r[ROW_SCORE]) for r in rows]


def results_from_detections(dets: np.ndarray, *, image_id, category_ids: list[int], **extra) -> list[dict]:
    """Detections [K, 6] of one image (`postprocess.DET_*`: score, contiguous label, box) -> results entries, each
    label mapped to its dataset category id (`category_ids[label]`)."""
    return [coco_result(image_id, category_ids[int(d[DET_LABEL])], d[DET_BOX], d[DET_SCORE], **extra) for d in dets]


def write_results_file(path, entries: list) -> Path:
    """A results file: a JSON list, one entry (a detection, or a BDD100K frame) per line; folders made as needed."""
    path = Path(path)
    os.makedirs(path.absolute().parent, exist_ok=True)
    path.write_text("[" + ",\n".join(json.dumps(e) for e in entries) + "]\n")
    return path


def image_ids_by_file_name(results: list[dict], gt: dict, *, source: str = "results") -> list[dict]:
    """COCO results that carry `file_name` (as predict writes them) -> the same entries with the ground
    truth's image ids, matched by file name (base names where the paths differ)."""
    by_name = {img["file_name"]: img["id"] for img in gt.get("images", []) if "file_name" in img}
    by_base = {os.path.basename(n): i for n, i in by_name.items()}
    out = []
    for n, r in enumerate(results, start=1):
        name = r["file_name"]
        image_id = by_name.get(name, by_base.get(os.path.basename(name)))
        if image_id is None:
            raise DataError(f"{source}: result #{n} is for {name}, which is not an image of the ground truth; "
                            "predict on the ground truth's images only")
        out.append({**r, "image_id": image_id})
    return out
