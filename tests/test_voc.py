"""Pascal VOC reader: exact corner conversion, difficult boxes as ignore regions, class order, one-line errors,
and the real BCCD VOC files (compared box for box with a third-party COCO conversion of the same XMLs)."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import shared
from recipe.core.errors import DataError
from recipe.data.formats import DatasetOptions, detect
from recipe.data.sanitize import format_report
from recipe.data.splits import load_dataset_splits
from recipe.data.voc import voc_to_xywh


def _obj(name, box, difficult=0):
    xmin, ymin, xmax, ymax = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin>"
            f"<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def write_voc(root, images: dict, size=(40, 30), lists=None):
    """images: {name: [object xml, ...]}; lists: {"train": [names], "val": [names]}."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, objects in images.items():
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>")
    for split, names in (lists or {}).items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def _load(root, tmp_path, **kw):
    return load_dataset_splits(str(root), cache_dir=str(tmp_path / "cache"), **kw)


def test_corners_are_one_based_inclusive():
    assert voc_to_xywh([1, 1, 40, 30]) == [0, 0, 40, 30]  # the whole 40x30 image
    assert voc_to_xywh([11, 6, 20, 15]) == [10, 5, 10, 10]
    assert voc_to_xywh([5, 7, 5, 7]) == [4, 6, 1, 1]  # xmin == xmax: one pixel


def test_two_splits_exact_boxes_difficult_as_crowd_sorted_classes(tmp_path):
    root = write_voc(tmp_path / "voc", {
        "b": [_obj("zebra", (11, 6, 20, 15)), _obj("ant", (1, 1, 40, 30), difficult=1)],
        "a": [_obj("ant", (2.5, 3, 10, 12))],
        "c": [_obj("zebra", (35, 25, 50, 40))],  # past the 40x30 border: clamped by sanitize
    }, lists={"train": ["b", "a"], "val": ["c"]})
    assert detect(str(root)) == "voc"
    data = _load(root, tmp_path)
    train, val = data["train"], data["validation"]
    assert train.categories == [{"id": 1, "name": "ant"}, {"id": 2, "name": "zebra"}]  # sorted names
    assert val.categories == train.categories
    rows = train.dataset.with_format(None)
    assert rows["orig_image_id"] == ["a", "b"] and rows["image_id"] == [1, 2]
    assert rows[0]["objects"]["bbox"] == [[1.5, 2.0, 8.5, 10.0]]
    assert rows[1]["objects"]["bbox"] == [[10.0, 5.0, 10.0, 10.0], [0.0, 0.0, 40.0, 30.0]]
    assert rows[1]["objects"]["category"] == [1, 0] and rows[1]["objects"]["iscrowd"] == [0, 1]
    assert rows[1]["objects"]["area"] == [100.0, 1200.0]
    assert val.dataset[0]["objects"]["bbox"] == [[34.0, 24.0, 6.0, 6.0]]  # 16x16 from (34, 24), clamped
    assert train.report["boxes_difficult"] == 1 and train.report["boxes_crowd"] == 1
    assert val.report["boxes_clamped"] == 1 and train.report["format"] == "voc"


def test_class_names_given_set_the_order_and_unknown_names_are_one_line(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [_obj("dog", (1, 1, 5, 5)), _obj("cat", (1, 1, 5, 5))]})
    data = _load(root, tmp_path, options=DatasetOptions(class_names=("dog", "cat")), train_val_split=0)
    assert data["train"].categories == [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]
    assert data["train"].dataset[0]["objects"]["category"] == [0, 1]
    with pytest.raises(DataError, match=r"a\.xml: object 1 \(cat\): class 'cat' is not in class_names \['dog'\]"):
        _load(root, tmp_path, options=DatasetOptions(class_names=("dog",)), train_val_split=0)


def test_without_lists_every_xml_trains_and_validation_is_split_off_seeded(tmp_path):
    root = write_voc(tmp_path / "voc", {f"im{i}": [_obj("x", (1, 1, 9, 9))] for i in range(10)})
    data = _load(root, tmp_path, train_val_split=0.2, seed=3)
    again = _load(root, tmp_path, train_val_split=0.2, seed=3)
    assert len(data["train"].dataset) == 8 and len(data["validation"].dataset) == 2
    val_ids = data["validation"].dataset["orig_image_id"]
    assert val_ids == again["validation"].dataset["orig_image_id"]
    assert not set(val_ids) & set(data["train"].dataset["orig_image_id"])
    assert data["validation"].report["images"] == 2 and "seed 3" in data["validation"].report["split_off"]
    assert (data["train"].report["boxes_kept"], data["validation"].report["boxes_kept"]) == (8, 2)
    first = _load(root, tmp_path, train_val_split=0.2, seed=3, subset=3)  # subset: after the split, of each part
    assert (len(first["train"].dataset), len(first["validation"].dataset)) == (3, 2)
    assert first["validation"].dataset["orig_image_id"] == val_ids
    assert len(_load(root, tmp_path, train_val_split=0, subset=3)["train"].dataset) == 3
    assert "validation split" in format_report(data["train"].report, "train")


def test_bad_input_is_one_line_naming_the_file_and_the_object(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [_obj("x", (1, 1, 9, 9))], "b": []}, lists={"train": ["a", "zz"]})
    with pytest.raises(DataError, match=r"train\.txt:2: image 'zz' has no .*zz\.xml"):
        _load(root, tmp_path)
    (root / "ImageSets/Main/train.txt").write_text("a\nb\n")
    (root / "Annotations/b.xml").write_text("<annotation><object><name>x</name></object></annotation>")
    with pytest.raises(DataError, match=r"b\.xml: object 0 \(x\): no <bndbox>") as e:
        _load(root, tmp_path)
    assert "\n" not in str(e.value)
    (root / "Annotations/b.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"b\.xml: not valid XML"):
        _load(root, tmp_path)
    (root / "Annotations/b.xml").write_text(
        "<annotation><object><name>x</name><bndbox><xmin>a</xmin></bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"b\.xml: object 0 \(x\): <bndbox><xmin> must be a number, got 'a'"):
        _load(root, tmp_path)


def test_a_dropped_box_is_named_by_its_file_and_object_and_an_edit_rebuilds(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [_obj("x", (1, 1, 9, 9)), _obj("x", (50, 1, 60, 9))]})
    first = _load(root, tmp_path, train_val_split=0)["train"]
    assert first.report["boxes_dropped_degenerate"] == 1
    assert first.report["boxes_dropped"] == [f"{root}/Annotations/a.xml: object 1 (x): bbox [49.0, 0.0, 11.0, 9.0]"
                                             " xywh_abs"]
    assert not first.from_cache and _load(root, tmp_path, train_val_split=0)["train"].from_cache
    (root / "Annotations/a.xml").write_text((root / "Annotations/a.xml").read_text().replace("<xmax>9<", "<xmax>7<"))
    edited = _load(root, tmp_path, train_val_split=0)["train"]
    assert not edited.from_cache and edited.dataset[0]["objects"]["bbox"] == [[0.0, 0.0, 7.0, 9.0]]


@pytest.mark.data
def test_bccd_voc_gives_the_boxes_of_the_third_party_coco_conversion(tmp_path):
    bccd = shared("bccd", "BCCD")
    data = _load(bccd, tmp_path, image_check="header")
    train, val = data["train"], data["validation"]
    assert (len(train.dataset), len(val.dataset)) == (205, 87)
    assert [c["name"] for c in train.categories] == ["Platelets", "RBC", "WBC"]
    for split, table in (("train", train), ("val", val)):
        coco = json.loads(shared("bccd", "coco_by_yukkyo_voc2coco", f"bccd_{split}_cocoformat.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        expected = {}
        for a in coco["annotations"]:
            expected.setdefault(a["image_id"], []).append((names[a["category_id"]], a["bbox"]))
        got = {}
        for row in table.dataset.with_format(None):
            got[row["orig_image_id"]] = [(table.categories[c]["name"], b) for c, b in
                                         zip(row["objects"]["category"], row["objects"]["bbox"])]
        assert {k: sorted(v) for k, v in got.items() if v} == {k: sorted(v) for k, v in expected.items()}
    # Hand-checked from the XMLs: border boxes (xmax 640 = the last column, ymax 480 = the last row) and the two
    # boxes with xmin == xmax, ymin == ymax (one pixel under VOC's inclusive corners).
    val_rows = {r["orig_image_id"]: r["objects"]["bbox"] for r in val.dataset.with_format(None)}
    train_rows = {r["orig_image_id"]: r["objects"]["bbox"] for r in train.dataset.with_format(None)}
    assert val_rows["BloodImage_00000"][5:9] == [[554.0, 355.0, 86.0, 100.0], [468.0, 411.0, 99.0, 69.0],
                                                [0.0, 332.0, 87.0, 105.0], [3.0, 405.0, 92.0, 75.0]]
    assert val_rows["BloodImage_00338"][12] == [503.0, 336.0, 1.0, 1.0]
    assert train_rows["BloodImage_00343"][3] == [180.0, 328.0, 1.0, 1.0]
    assert (train.report["boxes_one_pixel_wide"], val.report["boxes_one_pixel_wide"]) == (1, 1)
    assert (train.report["boxes_kept"], val.report["boxes_kept"]) == (2805, 1138)
    assert train.report["boxes_clamped"] == val.report["boxes_clamped"] == 0
    print(format_report(train.report, "BCCD train (VOC)"))
    print(format_report(val.report, "BCCD val (VOC)"))
