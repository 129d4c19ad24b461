"""BDD100K / Scalabel detection labels -> raw records (as `coco.read_coco`), COCO json, COCO results.

Follows the official toolkit (bdd100k `label/to_scalabel.py` + scalabel `label/to_coco.py`, config
`bdd100k/configs/det.toml`): 10 classes with ids 1..10; person/bike/motor/van/caravan are renamed;
"other person"/"other vehicle"/"trailer" become pedestrian/car/truck marked ignored; any other
category is dropped; labels without `box2d` (lanes, drivable areas, poly2d) are skipped;
`iscrowd = crowd or ignored`. Attribute keys are read in either case (2021 files say "Crowd").

`box2d` is `xyxy_abs`; COCO boxes are `xywh_abs`. `box_convention` says how they relate:
"inclusive" (w = x2 - x1 + 1: current scalabel `box2d_to_bbox`, and how the official scores are
reproduced) or "exclusive" (w = x2 - x1: the 2021 toolkit, whose COCO files it reproduces).

Image ids: frame names in sorted order -> 1..N (as `coco.map_image_ids` numbers string ids), so they
do not depend on the order of the file; the name is kept as `orig_image_id` / `file_name`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from recipe.data.choices import BOX_CONVENTIONS
from recipe.data.coco import (
    DataError,
    check_relative_name,
    is_finite_number,
    load_json,
    resolve_image_path,
)

BDD_CATEGORIES = [{"id": i, "name": n} for i, n in enumerate(
    ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "traffic light",
     "traffic sign"], start=1)]
NAME_MAPPING = {"person": "pedestrian", "bike": "bicycle", "motor": "motorcycle", "van": "car", "caravan": "car"}
IGNORED_MAPPING = {"other person": "pedestrian", "other vehicle": "car", "trailer": "truck"}

_ID = {c["name"]: c["id"] for c in BDD_CATEGORIES}
# category as written -> (category_id, ignored, renamed): one dict lookup per label.
CATEGORY_RULES = {**{n: (i, False, False) for n, i in _ID.items()},
                  **{old: (_ID[new], False, True) for old, new in NAME_MAPPING.items()},
                  **{old: (_ID[new], True, False) for old, new in IGNORED_MAPPING.items()}}
COUNT_KEYS = ["frames", "frames_without_labels", "labels_read", "labels_without_box2d",
              "labels_dropped_category", "labels_renamed", "labels_ignored_as_crowd", "string_image_ids"]
_NO_ATTRIBUTES: dict = {}


def is_bdd_frame_list(obj) -> bool:
    """True for a non-empty JSON list of frames `{name, labels, ...}` (BDD100K / Scalabel).

    Only the first element is looked at; `convert_frames` checks every frame. A frame may lack `labels`
    (no boxes); a 2021 flat prediction `{name, category, bbox}` is not a frame. A Scalabel dataset dict
    `{frames, config}` is not accepted (no sample file has that shape).
    """
    if not (isinstance(obj, list) and obj and isinstance(obj[0], dict) and "name" in obj[0]):
        return False
    return "labels" in obj[0] or not ("bbox" in obj[0] or "category" in obj[0])


def box_offset(box_convention: str) -> float:
    if box_convention not in BOX_CONVENTIONS:
        raise ValueError(f"box_convention {box_convention!r} is not one of {sorted(BOX_CONVENTIONS)}")
    return BOX_CONVENTIONS[box_convention]


def convert_frames(frames: list, source: str = "frames", box_convention: str = "inclusive", *,
                   predictions: bool = False) -> tuple[list[tuple[str, list[tuple]]], dict]:
    """Apply the toolkit's rules. Returns ([(frame name, rows)] sorted by name, counts), where each row is
    (category_id, bbox `xywh_abs`, area, iscrowd, ignored, label id, score or None).

    Frame names must stay inside the image folder (`check_relative_name`). With `predictions`, every
    label needs a finite `score` and a known category (a label file may hold other categories; a
    detector's output may not)."""
    one = box_offset(box_convention)
    if not isinstance(frames, list):
        raise DataError(f"{source}: not a BDD100K frame list (a JSON list of {{name, labels}})")
    counts = dict.fromkeys(COUNT_KEYS, 0)
    out, seen = [], set()
    for i, frame in enumerate(frames):
        name = frame.get("name") if isinstance(frame, dict) else None
        if not isinstance(name, str) or not name:
            raise DataError(f"{source}: frame #{i} has no 'name' (each frame is {{name, labels}})")
        if name in seen:
            raise DataError(f"{source}: frame {name!r} appears twice; merge its labels into one frame")
        check_relative_name(name, f"{source}: frame {name!r}")
        seen.add(name)
        labels = frame.get("labels")
        if labels is None:
            labels = []
        elif not isinstance(labels, list):
            raise DataError(f"{source}: frame {name!r}: 'labels' must be a list or null, got {type(labels).__name__}")
        counts["frames_without_labels"] += not labels
        counts["labels_read"] += len(labels)
        out.append((name, _convert_labels(labels, one, counts, f"{source}: frame {name!r}", predictions)))
    out.sort(key=lambda item: item[0])
    counts["frames"] = counts["string_image_ids"] = len(out)
    return out, counts


def _convert_labels(labels: list, one: float, counts: dict, where: str, predictions: bool = False) -> list[tuple]:
    rows = []
    for label in labels:
        try:
            box = label.get("box2d")
            if box is None:
                counts["labels_without_box2d"] += 1
                continue
            rule = CATEGORY_RULES.get(label.get("category"))
            if rule is None:
                if not isinstance(label["category"], str):
                    raise TypeError
                if predictions:
                    raise DataError(f"{where}, label id {label.get('id')!r}: category {label['category']!r} is not "
                                    f"a BDD100K detection class ({', '.join(_ID)})")
                counts["labels_dropped_category"] += 1
                continue
            x1, y1 = box["x1"] + 0.0, box["y1"] + 0.0
            w, h = box["x2"] - x1 + one, box["y2"] - y1 + one
            attrs = label.get("attributes") or _NO_ATTRIBUTES
            # an ignored class, or a label that bdd100k's to_scalabel already marked ignored
            ignored = rule[1] or bool(attrs.get("ignored"))
            crowd = ignored or bool(attrs.get("crowd") or attrs.get("Crowd"))
        except (AttributeError, KeyError, TypeError):
            raise _label_error(label, where) from None
        if not math.isfinite(x1 + y1 + w + h):
            raise _label_error(label, where)
        if predictions and not is_finite_number(label.get("score")):
            raise DataError(f"{where}, label id {label.get('id')!r}: 'score' must be a number (finite), "
                            f"got {label.get('score')!r}")
        counts["labels_renamed"] += rule[2]
        counts["labels_ignored_as_crowd"] += ignored
        rows.append((rule[0], [x1, y1, w, h], w * h, int(crowd), int(ignored), label.get("id"), label.get("score")))
    return rows


def _label_error(label, where: str) -> DataError:
    if not isinstance(label, dict):
        return DataError(f"{where}: a label is not an object: {label!r:.80}")
    what = f"{where}, label id {label.get('id')!r}"
    if not isinstance(label.get("category"), str):
        return DataError(f"{what}: 'category' must be a string, got {label.get('category')!r}")
    if not isinstance(label.get("attributes") or {}, dict):
        return DataError(f"{what}: 'attributes' must be an object, got {label.get('attributes')!r:.80}")
    return DataError(f"{what}: box2d must be {{x1, y1, x2, y2}} finite numbers, got {label.get('box2d')!r:.120}; "
                     "fix or remove the label")


def load_frames(label_file: str | os.PathLike) -> list:
    data = load_json(label_file)
    if data != [] and not is_bdd_frame_list(data):
        shape = "a {frames, config} dict: pass its 'frames'" if isinstance(data, dict) and "frames" in data else \
            "expected a JSON list of frames {name, labels}"
        raise DataError(f"{label_file}: not a BDD100K label file ({shape})")
    return data


def read_bdd100k(label_file: str | os.PathLike, image_root: str | os.PathLike, box_convention: str = "inclusive",
                 check_images: bool = True, image_size: tuple[int, int] = (1280, 720)
                 ) -> tuple[list[dict], list[dict], dict]:
    """Read a BDD100K detection label file into `read_coco`'s raw records (sorted by image_id), the 10
    categories and counts. Annotation ids are 1..M in image-id order. `image_size` is (width, height)."""
    label_file, image_root = Path(label_file), Path(image_root)
    frames, counts = convert_frames(load_frames(label_file), str(label_file), box_convention)
    width, height = image_size
    root = os.path.realpath(image_root)
    records, missing, ann_id = [], [], 0
    for image_id, (name, rows) in enumerate(frames, start=1):
        path = resolve_image_path(name, image_root, f"{label_file}: frame {name!r}", root)[0]
        if check_images and not os.path.isfile(path):
            missing.append(path)
        anns = []
        for category_id, bbox, area, iscrowd, *_ in rows:
            ann_id += 1
            anns.append({"id": ann_id, "category_id": category_id, "bbox": bbox, "area": area, "iscrowd": iscrowd})
        records.append({"image_id": image_id, "orig_image_id": name, "image_path": path,
                        "width": width, "height": height, "annotations": anns})
    if missing:
        raise DataError(f"{label_file}: {len(missing)} image file(s) not found under {image_root}, "
                        f"e.g. {missing[0]}; check --train-img/--val-img")
    return records, [dict(c) for c in BDD_CATEGORIES], counts


def bdd_to_coco(frames: list, box_convention: str = "inclusive", image_size: tuple[int, int] = (1280, 720),
                source: str = "frames") -> dict:
    """COCO detection json from a frame list. `ignore` is 1 for ignored labels (scalabel writes 0; COCOeval
    overwrites it with `iscrowd` either way); `info.counts` holds the counts."""
    converted, counts = convert_frames(frames, source, box_convention)
    images, annotations = [], []
    for image_id, (name, rows) in enumerate(converted, start=1):
        images.append({"id": image_id, "file_name": name, "width": image_size[0], "height": image_size[1]})
        for category_id, bbox, area, iscrowd, ignored, label_id, _ in rows:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": bbox, "area": area, "iscrowd": iscrowd, "ignore": ignored,
                                "scalabel_id": label_id})
    return {"info": {"box_convention": box_convention, "counts": counts}, "images": images,
            "annotations": annotations, "categories": [dict(c) for c in BDD_CATEGORIES]}


def convert_file(label_file: str | os.PathLike, output: str | os.PathLike, box_convention: str = "inclusive") -> dict:
    """Write the COCO json of a BDD100K label file; returns the counts."""
    if os.path.isdir(output):
        raise DataError(f"--output {output}: is a folder; give a file name, e.g. {os.path.join(output, 'coco.json')}")
    coco = bdd_to_coco(load_frames(label_file), box_convention, source=str(label_file))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w") as f:
        json.dump(coco, f)
    return coco["info"]["counts"]


def bdd_predictions_to_coco_results(pred_frames: list, name_to_image_id: dict, box_convention: str = "inclusive",
                                    source: str = "predictions") -> list[dict]:
    """BDD predictions -> COCO results [{image_id, category_id, bbox `xywh_abs`, score}].

    Takes frames `{name, labels: [{category, score, box2d}]}` or the 2021 flat list `{name, category, score,
    bbox: [x1, y1, x2, y2]}`. Categories follow the label rules; labels without a box or with another
    category are skipped. A name that is not in `name_to_image_id` is retried by its base name (2021
    predictions are named "<video>/<frame>.jpg"), then is an error.
    """
    if pred_frames and isinstance(pred_frames[0], dict) and "labels" not in pred_frames[0] \
            and "bbox" in pred_frames[0]:
        pred_frames = [_flat_to_frame(p, source) for p in pred_frames]
    by_name: dict[str, list] = {}
    for n, frame in enumerate(pred_frames):  # the flat format has one frame per box; frames may repeat
        if not isinstance(frame, dict) or not isinstance(frame.get("name"), str):
            raise DataError(f"{source}: prediction frame [{n}] is not {{name, labels}}: {frame!r:.80}")
        labels = frame.get("labels")
        if labels is not None and not isinstance(labels, list):
            raise DataError(f"{source}: frame {frame['name']!r}: 'labels' must be a list, got "
                            f"{type(labels).__name__}; write one entry per detection")
        by_name.setdefault(frame["name"], []).extend(labels or [])
    converted, _ = convert_frames([{"name": n, "labels": ls} for n, ls in by_name.items()], source, box_convention,
                                  predictions=True)
    results = []
    for name, rows in converted:
        image_id = name_to_image_id.get(name, name_to_image_id.get(name.rsplit("/", 1)[-1]))
        if image_id is None:
            raise DataError(f"{source}: predictions for frame {name!r}, which is not in the ground truth")
        for category_id, bbox, _, _, _, label_id, score in rows:
            results.append({"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": float(score)})
    return results


def _flat_to_frame(pred: dict, source: str) -> dict:
    if not isinstance(pred, dict):
        raise DataError(f"{source}: a flat prediction is not {{name, category, score, bbox}}: {pred!r:.80}")
    bbox = pred.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DataError(f"{source}: prediction {pred.get('id')!r} of frame {pred.get('name')!r}: bbox must be "
                        f"[x1, y1, x2, y2], got {bbox!r:.80}")
    box2d = dict(zip(("x1", "y1", "x2", "y2"), bbox))
    return {"name": pred.get("name"), "labels": [{"id": pred.get("id"), "category": pred.get("category"),
                                                  "score": pred.get("score"), "box2d": box2d}]}


def coco_results_to_bdd_frames(results: list[dict], image_id_to_name: dict, category_id_to_name: dict,
                               box_convention: str = "inclusive") -> list[dict]:
    """COCO results (`xywh_abs`) -> BDD frames `{name, labels: [{id, category, score, box2d `xyxy_abs`}]}`,
    one per image in `image_id_to_name` (in id order, `labels: []` without detections). Inverse of
    `bdd_predictions_to_coco_results`: exact for integer-valued boxes."""
    one = box_offset(box_convention)
    frames = {i: {"name": image_id_to_name[i], "labels": []} for i in sorted(image_id_to_name)}
    for n, r in enumerate(results, start=1):
        frame = frames.get(r["image_id"])
        if frame is None or r["category_id"] not in category_id_to_name:
            raise DataError(f"result #{n}: image_id {r['image_id']!r} or category_id {r['category_id']!r} is unknown")
        x, y, w, h = (float(v) for v in r["bbox"])
        frame["labels"].append({"id": str(n), "category": category_id_to_name[r["category_id"]],
                                "score": float(r["score"]),
                                "box2d": {"x1": x, "y1": y, "x2": x + w - one, "y2": y + h - one}})
    return list(frames.values())
