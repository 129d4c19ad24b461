"""Ultralytics YOLO reader: data.yaml paths and names, labels beside images the Ultralytics way, normalised boxes
scaled by the image's real size (hand-computed), one-line errors naming the label file and line."""

import numpy as np
import pytest
from PIL import Image

from recipe.core.errors import DataError
from recipe.data.formats import detect
from recipe.data.splits import load_dataset_splits
from recipe.data.yolo import label_path


def _image(path, size=(40, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)


def write_yolo(root, labels: dict, yaml_text=None, size=(40, 32)):
    """labels: {"train/x": "0 0.5 0.5 0.25 0.5\\n", ...} (None: no label file)."""
    for name, text in labels.items():
        split, stem = name.split("/")
        _image(root / "images" / split / f"{stem}.png", size)
        if text is not None:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    yaml = root / "data.yaml"
    yaml.write_text(yaml_text or "path: .\ntrain: images/train\nval: images/val\nnames: [cat, dog]\n")
    return yaml


def _load(yaml, tmp_path, **kw):
    return load_dataset_splits(str(yaml), cache_dir=str(tmp_path / "cache"), **kw)


def test_label_path_is_the_ultralytics_replacement_of_the_last_images_folder():
    assert label_path("/d/images/train/a.b.jpg") == "/d/labels/train/a.b.txt"
    assert label_path("/images/x/images/train/a.png") == "/images/x/labels/train/a.txt"


def test_rounding_of_the_normalised_text_does_not_push_a_border_box_past_the_border():
    from recipe.data.yolo import cxcywh_norm_to_xywh_abs

    # The demo's box (180, 204, 34, 36) on 320x240 written as text: y + h came back as 240.00000000000003.
    box = cxcywh_norm_to_xywh_abs([0.615625, 0.925, 0.10625, 0.15], 320, 240)
    assert box[1] + box[3] == 240.0 and box == [180.0, 204.00000000000003, 34.0, 35.99999999999997]
    assert cxcywh_norm_to_xywh_abs([0.9, 0.5, 0.4, 0.5], 10, 10)[0] + 4.0 > 10  # a real overrun stays


def test_boxes_are_scaled_by_the_real_image_size(tmp_path):
    yaml = write_yolo(tmp_path / "y", {
        "train/a": "1 0.5 0.5 0.25 0.5\n\n0 0.125 0.25 0.25 0.5\n",  # a blank line is skipped
        "train/b": None,  # no label file: an image without boxes
        "val/c": "0 0.9375 0.5 0.25 0.25\n",  # x from 35 to 45 on a 40-wide image: clamped to 35..40
    })
    assert detect(str(yaml)) == "yolo"
    data = _load(yaml, tmp_path)
    train, val = data["train"], data["validation"]
    assert train.categories == [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]
    rows = train.dataset.with_format(None)
    assert rows["orig_image_id"] == ["a", "b"] and rows["width"] == [40, 40] and rows["height"] == [32, 32]
    # cx 0.5 cy 0.5 w 0.25 h 0.5 on 40x32: x = (0.5 - 0.125) * 40 = 15, y = (0.5 - 0.25) * 32 = 8, w 10, h 16
    assert rows[0]["objects"]["bbox"] == [[15.0, 8.0, 10.0, 16.0], [0.0, 0.0, 10.0, 16.0]]
    assert rows[0]["objects"]["category"] == [1, 0] and rows[0]["objects"]["area"] == [160.0, 160.0]
    assert rows[1]["objects"]["bbox"] == []
    assert val.dataset[0]["objects"]["bbox"] == [[32.5, 12.0, 7.5, 8.0]]
    assert train.report["images_without_label_file"] == 1 and val.report["boxes_clamped"] == 1


def test_names_mapping_absolute_paths_lists_and_roboflow_dotdot(tmp_path):
    root = tmp_path / "y"
    write_yolo(root, {"train/a": "3 0.5 0.5 0.5 0.5\n", "valid/b": "7 0.5 0.5 0.5 0.5\n"})
    (root / "val.txt").write_text("images/valid/b.png\n")
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: {root}/images/train\nval: val.txt\nnames: {{3: cat, 7: dog}}\n")
    data = _load(yaml, tmp_path)
    assert data["train"].categories == [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    assert data["validation"].dataset[0]["objects"]["category"] == [1]
    yaml.write_text("train: ../images/train\nval: ../images/valid\nnames: [a, b, c, cat, e, f, g, dog]\n")
    data = _load(yaml, tmp_path)  # Roboflow's "../x" under the yaml's folder
    assert len(data["train"].dataset) == 1 and data["validation"].dataset[0]["objects"]["category"] == [7]


@pytest.mark.parametrize(("line", "message"), [
    ("2 0.5 0.5 0.1 0.1", r"a\.txt:2: class index 2 is out of range \(data\.yaml names ids 0\.\.1\)"),
    ("0 0.5 0.5", r"a\.txt:2: 3 numbers, a box label is 5"),
    ("0 0.5 0.5 0.1 0.1 0.9", r"a\.txt:2: 6 numbers, a box label is 5"),
    ("0 0.5 1.5 0.1 0.1", r"a\.txt:2: coordinates must be normalised to \[0, 1\] \(cx cy w h\), got 0\.5 1\.5"),
    ("0 0.5 0.5 -0.1 0.1", r"a\.txt:2: coordinates must be normalised"),
])
def test_bad_label_lines_are_one_line_errors_naming_file_and_line(tmp_path, line, message):
    yaml = write_yolo(tmp_path / "y", {"train/a": f"0 0.5 0.5 0.1 0.1\n{line}\n", "val/b": ""})
    with pytest.raises(DataError, match=message) as e:
        _load(yaml, tmp_path)
    assert "\n" not in str(e.value)


def test_editing_one_label_file_rebuilds_the_table(tmp_path):
    yaml = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.25 0.5\n", "val/b": ""})
    assert not _load(yaml, tmp_path)["train"].from_cache
    assert _load(yaml, tmp_path)["train"].from_cache
    (tmp_path / "y" / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    again = _load(yaml, tmp_path)["train"]
    assert not again.from_cache and again.dataset[0]["objects"]["category"] == [1]


def test_not_a_data_yaml_says_what_it_has(tmp_path):
    yaml = tmp_path / "data.yaml"
    yaml.write_text("epochs: 3\n")
    with pytest.raises(DataError, match=r"not an Ultralytics data\.yaml \(needs 'train' and 'names'; has \['epochs'\]"):
        _load(yaml, tmp_path)
