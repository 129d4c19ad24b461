import json
import subprocess
import sys
from collections import Counter

import pytest

from conftest import ROOT, shared, write_json
from recipe.data.bdd100k import (
    BDD_CATEGORIES,
    bdd_predictions_to_coco_results,
    bdd_to_coco,
    coco_results_to_bdd_frames,
    convert_file,
    is_bdd_frame_list,
    load_frames,
    read_bdd100k,
)
from recipe.data.coco import DataError, read_coco
from recipe.data.sanitize import sanitize_records
from recipe.evaluation.coco_eval import METRIC_KEYS, coco_eval, quiet_coco

NAMES = ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "traffic light",
         "traffic sign"]


def _frame(name, *labels):
    return {"name": name, "labels": list(labels)}


def _label(category, box=(10, 20, 29, 59), label_id="1", **attributes):
    x1, y1, x2, y2 = box
    return {"id": label_id, "category": category, "attributes": attributes,
            "box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}}


def _anns(coco):
    """{image file name: sorted [(category name, bbox, iscrowd)]}; ids and order do not matter."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    out = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], list(a["bbox"]), int(bool(a["iscrowd"]))))
    return {f: sorted(v, key=lambda t: (t[0], t[1])) for f, v in out.items()}


def test_categories_match_the_official_det_configs():
    assert [{"id": i, "name": n} for i, n in enumerate(NAMES, start=1)] == BDD_CATEGORIES
    for toml in (shared("bdd100k-label-samples", "bdd100k_wheel_det.toml"),
                 shared("bdd100k-det-202", "det_configs.toml")):
        names = [line.split('"')[1] for line in toml.read_text().splitlines() if line.strip().startswith("name =")]
        # file order; minus the parent categories and the "crowd" attribute
        assert [n for n in names if n not in {"human", "vehicle", "bike", "crowd"}] == NAMES


def test_is_bdd_frame_list_on_the_sample_files():
    for parts in [("bdd100k-label-samples", "example_ignore_annotation.json"),
                  ("bdd100k-label-samples", "scalabel_det.json"),
                  ("bdd100k-label-samples", "unitest_val_bdd_2018format.json"),
                  ("bdd100k-det-202", "track_sample_anns.json"), ("bdd100k-det-202", "bbox_predictions.json"),
                  ("bdd100k-det-202-legacy", "track_sample_anns_b1c66a42-6f7d68ca.json")]:
        assert is_bdd_frame_list(json.loads(shared(*parts).read_text())), parts
    for parts in [("bdd100k-det-202-legacy", "cocoformat_track_sample_annotations.json"),
                  ("bdd100k-det-202-legacy", "bbox_predictions.json")]:  # COCO json; flat predictions
        assert not is_bdd_frame_list(json.loads(shared(*parts).read_text())), parts
    assert not is_bdd_frame_list([]) and not is_bdd_frame_list({"frames": [], "config": {}})


def test_ignored_class_renamed_class_null_labels_and_capitalised_keys():
    # frame 0: "other person" (ignored -> pedestrian, crowd) and "person" (-> pedestrian); frame 1: labels null
    path = shared("bdd100k-label-samples", "example_ignore_annotation.json")
    records, categories, counts = read_bdd100k(path, "img", check_images=False)
    assert categories == BDD_CATEGORIES
    assert [(r["image_id"], r["orig_image_id"]) for r in records] == \
        [(1, "00091078-875c1f73-0000166.jpg"), (2, "00091078-875c1f73-0000167.jpg")]
    assert records[1]["annotations"] == []
    other, person = records[0]["annotations"]
    assert (other["id"], other["category_id"], other["iscrowd"]) == (1, 1, 1)
    assert (person["id"], person["category_id"], person["iscrowd"]) == (2, 1, 0)
    # inclusive: w = 1108.7226195720182 - 1068.051474568342 + 1, h = 466.2931350128905 - 362.7665840944419 + 1
    assert other["bbox"] == pytest.approx([1068.051474568342, 362.7665840944419, 41.6711450036762, 104.5265509184486],
                                          abs=1e-9)
    assert other["area"] == pytest.approx(41.6711450036762 * 104.5265509184486, abs=1e-6)
    assert counts == {"frames": 2, "frames_without_labels": 1, "labels_read": 2, "labels_without_box2d": 0,
                      "labels_dropped_category": 0, "labels_renamed": 1, "labels_ignored_as_crowd": 1,
                      "string_image_ids": 2}


def test_2018_schema_with_traffic_light_colour_as_list():
    records, _, counts = read_bdd100k(shared("bdd100k-label-samples", "unitest_val_bdd_2018format.json"), "img",
                                      check_images=False)
    (rec,) = records
    assert rec["orig_image_id"] == "b1c66a42-6f7d68ca.jpg" and (rec["width"], rec["height"]) == (1280, 720)
    # 34 boxes: car 19, traffic light 7, traffic sign 6, rider 1, motorcycle 1 (counted by hand from the file)
    assert Counter(a["category_id"] for a in rec["annotations"]) == {3: 19, 9: 7, 10: 6, 2: 1, 7: 1}
    assert [a["id"] for a in rec["annotations"]] == list(range(1, 35))
    assert not any(a["iscrowd"] for a in rec["annotations"])
    car12 = rec["annotations"][12]  # label id 12: x1 0, y1 336.893592, x2 52.40567, y2 403.024556
    assert car12["bbox"] == pytest.approx([0.0, 336.893592, 53.40567, 67.130964], abs=1e-9)
    assert counts["labels_read"] == 34 and counts["labels_renamed"] == counts["labels_dropped_category"] == 0


def test_scalabel_schema_with_traffic_light_colour_as_string():
    coco = bdd_to_coco(load_frames(shared("bdd100k-label-samples", "scalabel_det.json")), "exclusive")
    assert [a["category_id"] for a in coco["annotations"]] == [10, 10, 10, 10]
    # label id 0: x1 1000.698742, y1 281.992415, x2 1040.626872, y2 326.91156 (exclusive: w = x2 - x1)
    assert coco["annotations"][0]["bbox"] == pytest.approx([1000.698742, 281.992415, 39.92813, 44.919145], abs=1e-9)
    assert coco["annotations"][0]["scalabel_id"] == 0


def test_every_rule_on_synthetic_labels():
    frames = [_frame("b.jpg",
                     _label("bike"), _label("motor"), _label("van"), _label("caravan"), _label("person"),
                     _label("other vehicle"), _label("trailer"), _label("car", crowd=True), _label("bus", Crowd=True),
                     _label("tree"), _label("truck", ignored=True),
                     {"id": "9", "category": "lane/crosswalk", "poly2d": [{"vertices": [[0, 0], [5, 5]]}]},
                     {"id": "10", "category": "area/drivable", "poly2d": [], "box2d": None}),
              {"name": "a.jpg"}]  # no "labels" key at all
    coco = bdd_to_coco(frames)
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg", "b.jpg"]  # sorted names -> ids 1, 2
    got = [(NAMES[a["category_id"] - 1], a["iscrowd"], a["ignore"]) for a in coco["annotations"]]
    assert got == [("bicycle", 0, 0), ("motorcycle", 0, 0), ("car", 0, 0), ("car", 0, 0), ("pedestrian", 0, 0),
                   ("car", 1, 1), ("truck", 1, 1), ("car", 1, 0), ("bus", 1, 0), ("truck", 1, 1)]
    assert coco["info"]["counts"] == {"frames": 2, "frames_without_labels": 1, "labels_read": 13,
                                      "labels_without_box2d": 2, "labels_dropped_category": 1, "labels_renamed": 5,
                                      "labels_ignored_as_crowd": 3, "string_image_ids": 2}


def test_box_conventions_by_hand():
    frames = [_frame("a.jpg", _label("car", box=(10, 20, 29, 59)))]
    inclusive = bdd_to_coco(frames)["annotations"][0]
    exclusive = bdd_to_coco(frames, "exclusive")["annotations"][0]
    assert (inclusive["bbox"], inclusive["area"]) == ([10.0, 20.0, 20.0, 40.0], 800.0)
    assert (exclusive["bbox"], exclusive["area"]) == ([10.0, 20.0, 19.0, 39.0], 741.0)
    with pytest.raises(ValueError, match="box_convention 'half'"):
        bdd_to_coco(frames, "half")


def test_image_ids_do_not_depend_on_file_order(tmp_path):
    frames = load_frames(shared("bdd100k-det-202", "track_sample_anns.json"))
    forward, _, _ = read_bdd100k(shared("bdd100k-det-202", "track_sample_anns.json"), tmp_path, check_images=False)
    reverse, _, _ = read_bdd100k(write_json(tmp_path / "r.json", frames[::-1]), tmp_path, check_images=False)
    assert forward == reverse
    assert [(r["image_id"], r["orig_image_id"]) for r in forward[:2]] == \
        [(1, "b1c66a42-6f7d68ca-0000001.jpg"), (2, "b1c66a42-6f7d68ca-0000002.jpg")]
    assert forward[-1]["image_id"] == 202 and sum(len(r["annotations"]) for r in forward) == 3241
    assert sum(a["iscrowd"] for r in forward for a in r["annotations"]) == 132


def test_records_are_exactly_what_read_coco_gives_for_the_converted_file(tmp_path):
    labels = shared("bdd100k-label-samples", "unitest_val_bdd_2018format.json")
    convert_file(labels, tmp_path / "coco.json")
    ours = read_bdd100k(labels, tmp_path, check_images=False)
    theirs = read_coco(tmp_path / "coco.json", tmp_path, check_images=False)
    assert ours[0][0]["orig_image_id"] == "b1c66a42-6f7d68ca.jpg" and theirs[0][0]["orig_image_id"] == "1"
    theirs[0][0]["orig_image_id"] = "b1c66a42-6f7d68ca.jpg"  # the COCO file's own id; the rest must be equal
    assert ours[:2] == theirs[:2]
    sanitized, report = sanitize_records(ours[0], ours[2])
    assert report["boxes_kept"] == 34 and report["labels_read"] == 34


def test_missing_images_and_malformed_labels_are_errors_naming_them(tmp_path):
    labels = shared("bdd100k-label-samples", "example_ignore_annotation.json")
    with pytest.raises(DataError, match=r"example_ignore_annotation.json: 2 image file\(s\) not found.*0000166.jpg"):
        read_bdd100k(labels, tmp_path)
    for name in ("00091078-875c1f73-0000166.jpg", "00091078-875c1f73-0000167.jpg"):
        (tmp_path / name).write_bytes(b"")
    assert len(read_bdd100k(labels, tmp_path)[0]) == 2

    bad = _label("car", label_id="x7")
    bad["box2d"]["x2"] = "12"
    path = write_json(tmp_path / "bad.json", [_frame("f.jpg", _label("car"), bad)])
    with pytest.raises(DataError, match=r"bad.json: frame 'f.jpg', label id 'x7': box2d must be"):
        read_bdd100k(path, tmp_path, check_images=False)
    del bad["box2d"]["x2"]
    with pytest.raises(DataError, match=r"frame 'f.jpg', label id 'x7': box2d must be"):
        bdd_to_coco([_frame("f.jpg", bad)])
    with pytest.raises(DataError, match=r"frame 'f.jpg', label id '1': 'category' must be a string"):
        bdd_to_coco([_frame("f.jpg", {"id": "1", "box2d": {"x1": 0, "y1": 0, "x2": 1, "y2": 1}})])
    with pytest.raises(DataError, match=r"frame 'f.jpg': 'labels' must be a list or null"):
        bdd_to_coco([{"name": "f.jpg", "labels": {}}])
    with pytest.raises(DataError, match=r"frame #1 has no 'name'"):
        bdd_to_coco([_frame("f.jpg"), {"labels": []}])
    with pytest.raises(DataError, match=r"frame 'f.jpg' appears twice"):
        bdd_to_coco([_frame("f.jpg"), _frame("f.jpg")])
    with pytest.raises(DataError, match=r"not a BDD100K label file \(a \{frames, config\} dict"):
        read_bdd100k(write_json(tmp_path / "d.json", {"frames": [], "config": {}}), tmp_path)


def test_legacy_exclusive_conversion_reproduces_the_2021_toolkit_coco_file():
    folder = shared("bdd100k-det-202-legacy")
    ours = bdd_to_coco(load_frames(folder / "track_sample_anns_b1c66a42-6f7d68ca.json"), "exclusive")
    theirs = json.loads((folder / "cocoformat_track_sample_annotations.json").read_text())
    # The 2021 file names images "<video>/<frame>.jpg"; BDD frames are named "<frame>.jpg".
    for image in theirs["images"]:
        image["file_name"] = image["file_name"].split("/")[-1]
    ours_by_image, theirs_by_image = _anns(ours), _anns(theirs)
    assert ours_by_image.keys() == theirs_by_image.keys() and len(ours_by_image) == 202
    assert sum(map(len, ours_by_image.values())) == len(theirs["annotations"]) == 3241
    for name, expected in theirs_by_image.items():
        got = ours_by_image[name]
        assert [(c, crowd) for c, _, crowd in got] == [(c, crowd) for c, _, crowd in expected], name
        assert max((abs(a - b) for (_, x, _), (_, y, _) in zip(got, expected) for a, b in zip(x, y)), default=0) <= 1e-6


def test_scores_match_scalabel_reference_and_empty_predictions_are_clean():
    folder = shared("bdd100k-det-202")
    gt = bdd_to_coco(load_frames(folder / "track_sample_anns.json"))
    name_to_id = {i["file_name"]: i["id"] for i in gt["images"]}
    results = bdd_predictions_to_coco_results(load_frames(folder / "bbox_predictions.json"), name_to_id)
    assert len(results) == 5372
    metrics = coco_eval(quiet_coco(gt), results)
    # scalabel tests/eval/detect_test.py (percent); reproduced only with the inclusive convention
    reference = {"pedestrian": 41.37670388442971, "rider": 41.70985553789942, "car": 66.14185518719762,
                 "truck": 50.07078219289907, "bus": 0.3025302530253025, "motorcycle": 4.574628954954978}
    assert list(metrics["per_class"]) == NAMES
    for name, ap in metrics["per_class"].items():
        if name in reference:
            assert ap == pytest.approx(reference[name] / 100, abs=1e-9), name
        else:  # no ground truth for train, bicycle, traffic light, traffic sign: None, never 0
            assert ap is None, name
    assert metrics["map"] == pytest.approx(0.34029392668401016, abs=1e-9)
    assert metrics["mar_100"] == pytest.approx(0.4095160450224777, abs=1e-9)

    empty = bdd_predictions_to_coco_results(load_frames(folder / "bbox_predictions_empty.json"), name_to_id)
    assert empty == []  # its one label has a score but no box2d
    metrics = coco_eval(quiet_coco(gt), empty)
    assert all(metrics[k] == 0.0 for k in METRIC_KEYS)
    assert metrics["per_class"] == {n: (0.0 if n in reference else None) for n in NAMES}


def test_legacy_flat_predictions_reproduce_the_2021_toolkit_scores():
    folder = shared("bdd100k-det-202-legacy")
    gt = bdd_to_coco(load_frames(folder / "track_sample_anns_b1c66a42-6f7d68ca.json"), "exclusive")
    flat = json.loads((folder / "bbox_predictions.json").read_text())
    # names are "<video>/<frame>.jpg": found by their base name
    results = bdd_predictions_to_coco_results(flat, {i["file_name"]: i["id"] for i in gt["images"]}, "exclusive")
    assert len(results) == 5372
    metrics = coco_eval(quiet_coco(gt), results)
    # bdd100k eval/eval_test.py::test_det at a2ff51dc (2021), scored on the toolkit's own COCO file
    expected = [0.3310833329280097, 0.5373587734237398, 0.34287281244106843, 0.20356852321079935,
                0.48831230759261923, 0.6425314827066648, 0.23178269105404029, 0.3713671493592072,
                0.3993805135329416, 0.24934537065196868, 0.5545010044684765, 0.6604448777029422]
    assert [metrics[k] for k in METRIC_KEYS] == pytest.approx(expected, abs=1e-12)


def test_predictions_round_trip_and_unknown_frames():
    results = [{"image_id": 2, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.5},
               {"image_id": 1, "category_id": 10, "bbox": [0.0, 0.0, 1.0, 1.0], "score": 0.25}]
    names = {1: "a.jpg", 2: "b.jpg", 3: "c.jpg"}
    frames = coco_results_to_bdd_frames(results, names, {c["id"]: c["name"] for c in BDD_CATEGORIES})
    assert frames == [
        {"name": "a.jpg", "labels": [{"id": "2", "category": "traffic sign", "score": 0.25,
                                      "box2d": {"x1": 0.0, "y1": 0.0, "x2": 0.0, "y2": 0.0}}]},
        {"name": "b.jpg", "labels": [{"id": "1", "category": "car", "score": 0.5,
                                      "box2d": {"x1": 10.0, "y1": 20.0, "x2": 39.0, "y2": 59.0}}]},
        {"name": "c.jpg", "labels": []}]
    back = bdd_predictions_to_coco_results(frames, {n: i for i, n in names.items()})
    assert sorted(back, key=lambda r: r["image_id"]) == sorted(results, key=lambda r: r["image_id"])
    exclusive = coco_results_to_bdd_frames(results, names, {3: "car", 10: "traffic sign"}, "exclusive")
    assert exclusive[1]["labels"][0]["box2d"] == {"x1": 10.0, "y1": 20.0, "x2": 40.0, "y2": 60.0}
    with pytest.raises(DataError, match=r"predictions for frame 'zzz.jpg', which is not in the ground truth"):
        bdd_predictions_to_coco_results([_frame("zzz.jpg", {**_label("car"), "score": 0.9})], {"a.jpg": 1})
    with pytest.raises(DataError, match=r"frame 'a.jpg', label id '1': 'score' must be a number"):
        bdd_predictions_to_coco_results([_frame("a.jpg", _label("car"))], {"a.jpg": 1})


def test_script_converts_and_prints_counts(tmp_path):
    out = tmp_path / "coco.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_bdd100k.py"), "--labels",
                           str(shared("bdd100k-label-samples", "example_ignore_annotation.json")), "--output", str(out),
                           "--box-convention", "exclusive"], capture_output=True, text=True, check=True)
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 2 and [a["iscrowd"] for a in coco["annotations"]] == [1, 0]
    assert coco["annotations"][1]["bbox"] == pytest.approx([68.051474568342, 301.7665840944419, 40.6711450036762,
                                                            124.5265509184486], abs=1e-9)
    assert "labels_ignored_as_crowd" in proc.stdout and "labels_renamed" in proc.stdout
