import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import shared, write_json
from recipe.data.builder import load_detection_dataset
from recipe.data.coco import DataError, read_coco


def _images(root, names, size=(40, 30)):
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(root / n)
    return root


def _coco(images, annotations, categories=({"id": 7, "name": "a"}, {"id": 3, "name": "b"})):
    return {"images": images, "annotations": annotations, "categories": list(categories)}


def test_string_ids_are_mapped_in_sorted_order_and_kept(tmp_path):
    root = _images(tmp_path / "img", ["x.jpg", "y.jpg"])
    ann = write_json(tmp_path / "a.json", _coco(
        [{"id": "img_b", "file_name": "y.jpg", "width": 40, "height": 30},
         {"id": "img_a", "file_name": "x.jpg", "width": 40, "height": 30}],
        [{"id": 1, "image_id": "img_b", "category_id": 3, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}]))
    records, categories, counts = read_coco(ann, root)
    assert [(r["image_id"], r["orig_image_id"], os.path.basename(r["image_path"])) for r in records] == \
        [(1, "img_a", "x.jpg"), (2, "img_b", "y.jpg")]
    assert records[1]["annotations"][0]["category_id"] == 3
    assert categories == [{"id": 7, "name": "a"}, {"id": 3, "name": "b"}]  # file order
    assert counts["string_image_ids"] == 2


def test_integer_ids_are_kept(tmp_path):
    root = _images(tmp_path / "img", ["x.jpg"])
    ann = write_json(tmp_path / "a.json", _coco([{"id": 42, "file_name": "x.jpg", "width": 40, "height": 30}], []))
    records, _, counts = read_coco(ann, root)
    assert records[0]["image_id"] == 42 and records[0]["orig_image_id"] == "42"
    assert counts["string_image_ids"] == 0


def test_foreign_absolute_path_falls_back_to_base_name(tmp_path):
    root = _images(tmp_path / "img", ["x.jpg"])
    ann = write_json(tmp_path / "a.json", _coco(
        [{"id": 1, "file_name": "/home/someone/else/JPEGImages/x.jpg", "width": 40, "height": 30}], []))
    records, _, counts = read_coco(ann, root)
    assert records[0]["image_path"] == str(root / "x.jpg")
    assert counts["paths_from_base_name"] == 1


def test_path_escaping_the_root_is_an_error_naming_the_image(tmp_path):
    root = _images(tmp_path / "img", ["x.jpg"])
    _images(tmp_path, ["secret.jpg"])
    ann = write_json(tmp_path / "a.json", _coco(
        [{"id": "evil", "file_name": "../secret.jpg", "width": 40, "height": 30}], []))
    with pytest.raises(DataError, match=r"image id 'evil'.*outside the image root"):
        read_coco(ann, root)


def test_unknown_category_is_an_error_naming_the_annotation(tmp_path):
    root = _images(tmp_path / "img", ["x.jpg"])
    ann = write_json(tmp_path / "a.json", _coco(
        [{"id": 1, "file_name": "x.jpg", "width": 40, "height": 30}],
        [{"id": 555, "image_id": 1, "category_id": 99, "bbox": [1, 2, 3, 4]}]))
    with pytest.raises(DataError, match=r"annotation id 555: category_id 99 is not in 'categories'"):
        read_coco(ann, root)


def test_missing_image_file_is_an_error(tmp_path):
    root = _images(tmp_path / "img", [])
    ann = write_json(tmp_path / "a.json", _coco([{"id": 1, "file_name": "gone.jpg", "width": 4, "height": 3}], []))
    with pytest.raises(DataError, match=r"1 image file\(s\) not found.*gone.jpg"):
        read_coco(ann, root)


def test_builder_types_cache_subset_and_invalidation(tmp_path):
    root = _images(tmp_path / "img", [f"{i}.jpg" for i in (5, 3, 9, 1, 7)])
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 40, "height": 30} for i in (5, 3, 9, 1, 7)]
    anns = [{"id": 10, "image_id": 3, "category_id": 3, "bbox": [30, 20, 20, 20], "area": 99.5, "iscrowd": 0},
            {"id": 11, "image_id": 3, "category_id": 7, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 1}]
    ann = write_json(tmp_path / "a.json", _coco(images, anns))
    cache = tmp_path / "cache"
    first = load_detection_dataset(ann, root, cache_dir=str(cache))
    assert not first.from_cache
    ds = first.dataset
    assert ds["image_id"] == [1, 3, 5, 7, 9]
    assert ds.features["objects"]["category"].feature.names == ["a", "b"]
    row = ds[1]
    assert row["objects"] == {"id": [10, 11], "bbox": [[30.0, 20.0, 10.0, 10.0], [1.0, 1.0, 5.0, 5.0]],
                              "category": [1, 0], "area": [99.5, 25.0], "iscrowd": [0, 1]}
    assert first.report["boxes_clamped"] == 1 and first.report["boxes_crowd"] == 1

    second = load_detection_dataset(ann, root, cache_dir=str(cache), subset=2)
    assert second.from_cache
    assert second.dataset["image_id"] == [1, 3]

    anns[0]["bbox"] = [0, 0, 4, 4]
    write_json(ann, _coco(images, anns))
    third = load_detection_dataset(ann, root, cache_dir=str(cache))
    assert not third.from_cache
    assert third.dataset[1]["objects"]["bbox"][0] == [0.0, 0.0, 4.0, 4.0]


def test_bccd_coco_export_string_ids_and_foreign_paths(tmp_path):
    ann = shared("bccd", "coco_by_yukkyo_voc2coco", "bccd_val_cocoformat.json")
    data = load_detection_dataset(ann, shared("bccd", "BCCD", "JPEGImages"), cache_dir=str(tmp_path))
    raw = json.loads(ann.read_text())
    assert len(data.dataset) == len(raw["images"]) == 87
    assert data.report["string_image_ids"] == 87 and data.report["paths_from_base_name"] == 87
    assert data.dataset["orig_image_id"][:2] == ["BloodImage_00000", "BloodImage_00002"]
    assert data.dataset["image_id"][:2] == [1, 2]
    assert [c["name"] for c in data.categories] == ["RBC", "WBC", "Platelets"]


def test_supercategory_is_kept_from_the_file_to_the_evaluation_ground_truth(tmp_path):
    from recipe.evaluation.coco_eval import gt_from_table
    from recipe.evaluation.score_results import validate_ground_truth

    root = _images(tmp_path / "img", ["x.jpg"])
    cats = [{"id": 7, "name": "a", "supercategory": "animal"}, {"id": 3, "name": "b"},
            {"id": 5, "name": "c", "supercategory": None}]  # a null supercategory is as good as none
    ann = write_json(tmp_path / "a.json", _coco(
        [{"id": 1, "file_name": "x.jpg", "width": 40, "height": 30}],
        [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}], cats))
    expected = [{"id": 7, "name": "a", "supercategory": "animal"}, {"id": 3, "name": "b"}, {"id": 5, "name": "c"}]
    assert read_coco(ann, root)[1] == expected
    data = load_detection_dataset(ann, root, cache_dir=str(tmp_path / "cache"))
    assert data.categories == expected
    again = load_detection_dataset(ann, root, cache_dir=str(tmp_path / "cache"))
    assert again.from_cache and again.categories == expected
    assert gt_from_table(data.dataset, data.categories)["categories"] == expected  # what training evaluates with
    assert validate_ground_truth(json.loads(ann.read_text()), ann)["categories"] == expected  # what evaluate.py scores
