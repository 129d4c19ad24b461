"""Clamp, drop, count: the only place that edits annotations, and it reports every change.

Rules: boxes (`xywh_abs`) are clamped to the image; a box whose width or height is <= 0 after
clamping is dropped (it cannot be learned or matched); `iscrowd` boxes are kept with their flag (the
transforms keep them out of the loss, the evaluator uses them as ignore regions); images without boxes
stay. `area` is kept as written in the file, since COCOeval's size buckets use it.
"""

from __future__ import annotations

import json
import os

from recipe.core.boxes import clamp_xywh_abs

REPORT_ROWS = [
    ("images", "images"),
    ("images_without_boxes", "images without boxes (kept)"),
    ("boxes_in", "boxes read"),
    ("boxes_clamped", "boxes clamped to the image"),
    ("boxes_dropped_degenerate", "boxes dropped: w or h <= 0 after clamping"),
    ("boxes_crowd", "crowd boxes (eval ignore regions, not in the loss)"),
    ("boxes_kept", "boxes kept"),
    ("string_image_ids", "string image ids mapped to ints"),
    ("paths_from_base_name", "foreign absolute paths -> base name under the root"),
]
# Rows counted before sanitizing (reader, image check): shown when present, not initialised here.
OTHER_ROWS = [
    ("images_bad_dropped", "bad images dropped (skip_bad_images; listed below)"),
    ("annotation_ids_assigned", "annotations without an integer id: ids assigned"),
    ("areas_computed", "annotations without area: w x h used"),
    ("boxes_difficult", "VOC difficult boxes (ignore regions, as crowd)"),
    ("boxes_one_pixel_wide", "VOC boxes with xmin == xmax or ymin == ymax (1 pixel wide)"),
    ("images_without_label_file", "YOLO images without a label file (no boxes)"),
    ("images_written_from_bytes", "embedded images written out, bytes as stored"),
    ("boxes_of_classes_the_model_lacks", "boxes of classes the model lacks (not evaluated)"),
    ("format", "format"),
    ("split_off", "validation split"),
]
# Lists, not counts: printed one per line (first 10). `boxes_dropped` names each dropped box by the reader's own
# `where` (file and line or object) where the reader gives one.
LIST_ROWS = ("bad_images", "boxes_dropped")
# Written to data_report.json, said elsewhere (a warning per class, recipe/training/data.py), not in the table.
NOT_PRINTED = ("classes_without_boxes",)


def sanitize_records(records: list[dict], counts: dict | None = None) -> tuple[list[dict], dict]:
    """Return (new records, report). Input records are not modified."""
    report = {key: 0 for key, _ in REPORT_ROWS}
    report.update(counts or {})
    report["images"] = len(records)
    out = []
    for rec in records:
        anns = []
        for ann in rec["annotations"]:
            report["boxes_in"] += 1
            box = clamp_xywh_abs(ann["bbox"], rec["width"], rec["height"])
            if box[2] <= 0 or box[3] <= 0:
                report["boxes_dropped_degenerate"] += 1
                if "where" in ann:
                    report.setdefault("boxes_dropped", []).append(f"{ann['where']}: bbox {ann['bbox']} xywh_abs")
                continue
            if box != [float(v) for v in ann["bbox"]]:
                report["boxes_clamped"] += 1
            report["boxes_crowd"] += ann["iscrowd"]
            anns.append({**ann, "bbox": box})
        report["boxes_kept"] += len(anns)
        report["images_without_boxes"] += not anns
        out.append({**rec, "annotations": anns})
    return out, report


def format_report(report: dict, title: str) -> str:
    """A short fixed-width table of the non-zero rows (plus images and boxes kept, always)."""
    labels = dict(REPORT_ROWS + OTHER_ROWS)
    rows = [(label, report.get(key, 0)) for key, label in labels.items()
            if report.get(key, 0) or key in ("images", "boxes_kept")]
    rows += [(k, v) for k, v in report.items() if k not in labels and k not in LIST_ROWS + NOT_PRINTED and v]
    width = max(len(label) for label, _ in rows)
    lines = [f"data report: {title}"] + [f"  {label:<{width}}  {value:>9,}" if isinstance(value, int) else
                                         f"  {label:<{width}}  {value}" for label, value in rows]
    for key in LIST_ROWS:
        items = report.get(key) or []
        lines += [f"    {item}" for item in items[:10]] + ([f"    ... and {len(items) - 10} more"] if len(items) > 10 else [])
    return "\n".join(lines)


def save_reports(reports: dict, output_dir: str | os.PathLike) -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "data_report.json")
    with open(path, "w") as f:
        json.dump(reports, f, indent=2)
    return path
