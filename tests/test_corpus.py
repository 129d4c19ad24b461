"""A corpus of bad and unusual inputs, generated in a temp dir (nothing committed as files).

Each case builds its inputs in a fresh workspace and states its outcome: the exact one-line error, or the
correct result with the data report's counts. Paths in messages are written as {img}, {tmp}, {ann}, {pred}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO, ROOT
from recipe.core.errors import USER_ERRORS
from recipe.data.bdd100k import convert_file
from recipe.data.builder import load_detection_dataset
from recipe.evaluation.score_results import evaluate_files

W, H = 40, 30  # every generated image, unless a case says otherwise


@dataclass
class Workspace:
    tmp: Path

    @property
    def img(self) -> Path:
        return self.tmp / "img"

    def image(self, name: str, size=(W, H), mode="RGB", **save) -> Path:
        path = self.img / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        if mode == "I;16":
            Image.fromarray(rng.integers(0, 65535, (size[1], size[0]), dtype=np.uint16)).save(path)
        else:
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path, **save)  # noqa: E501
        return path

    def coco(self, images=None, annotations=None, categories=None, name="ann.json", **extra) -> Path:
        self.img.mkdir(exist_ok=True)
        if images is None:
            images = [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}]
            self.image("a.jpg")
        data = {"images": images, "annotations": annotations if annotations is not None else [],
                "categories": categories if categories is not None else [{"id": 1, "name": "car"}], **extra}
        return self.text(name, json.dumps(data))

    def text(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def build(self, ann, **kwargs):
        return load_detection_dataset(ann, self.img, cache_dir=str(self.tmp / "cache"), workers=2, **kwargs)

    def fmt(self, text: str, **more) -> str:
        return text.format(tmp=self.tmp, img=self.img, ann=self.tmp / "ann.json", pred=self.tmp / "pred.json",
                           **more)


def _ann(ann_id=1, image_id=1, category_id=1, bbox=(1, 2, 10, 8), **more):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox), **more}


CASES: dict[str, tuple] = {}  # name -> (make(ws) -> callable, expected error str or check(result, ws))


def case(name, expected):
    def register(make):
        CASES[name] = (make, expected)
        return make
    return register


# ------------------------------------------------------------------ COCO files that cannot be read

@case("truncated_json", "{ann}: not valid JSON (Expecting value: line 1 column 13 (char 12)); the file may be truncated")  # noqa: E501
def _(ws):
    ws.image("a.jpg")
    return lambda: ws.build(ws.text("ann.json", '{"images": ['))


@case("zero_byte_json", "{ann}: not valid JSON (Expecting value: line 1 column 1 (char 0)); the file may be truncated")
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.text("ann.json", b""), annotation_format="coco")


@case("binary_json", "{ann}: not a UTF-8 text file; is it really the annotation JSON?")
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.text("ann.json", b"\xff\xd8\xff\xe0garbage"), annotation_format="coco")


@case("annotation_file_missing", "{tmp}/nope.json: annotation file not found")
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.tmp / "nope.json")


@case("image_folder_missing", "{tmp}/nowhere: image folder not found (for {ann}); check --train-img/--val-img")
def _(ws):
    ann = ws.coco()
    return lambda: load_detection_dataset(ann, ws.tmp / "nowhere", cache_dir=str(ws.tmp / "cache"))


@case("no_categories_key", "{ann}: not a COCO detection file (needs 'images' and 'categories')")
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.text("ann.json", '{"images": []}'))


@case("annotations_null", "{ann}: 'annotations' must be a list, got null; use [] for a file without annotations")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=None, name="x.json") and ws.text("ann.json", json.dumps(
        {**json.loads((ws.tmp / "x.json").read_text()), "annotations": None})))


@case("images_null", "{ann}: 'images' must be a list, got null")
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.text("ann.json", '{"images": null, "categories": [{"id": 1, "name": "a"}]}'))


@case("category_without_name", "{ann}: categories[1] (id 2): each category needs a non-empty 'name'")
def _(ws):
    return lambda: ws.build(ws.coco(categories=[{"id": 1, "name": "car"}, {"id": 2, "supercategory": "x"}]))


@case("category_id_string", "{ann}: categories[0]: each category needs an integer 'id', got {{'id': '1', 'name': 'car'}}")  # noqa: E501
def _(ws):
    return lambda: ws.build(ws.coco(categories=[{"id": "1", "name": "car"}]))


@case("duplicate_class_names", "{ann}: categories[1]: category name 'car' is used by ids 1 and 2; class names must "
                               "be unique (merge the categories or rename one)")
def _(ws):
    return lambda: ws.build(ws.coco(categories=[{"id": 1, "name": "car"}, {"id": 2, "name": "car"}]))


@case("duplicate_category_ids", "{ann}: duplicate category ids in 'categories'")
def _(ws):
    return lambda: ws.build(ws.coco(categories=[{"id": 1, "name": "car"}, {"id": 1, "name": "bus"}]))


@case("empty_categories", "{ann}: 'categories' is empty; list the classes as [{{id, name}}]")
def _(ws):
    return lambda: ws.build(ws.coco(categories=[]))


@case("unknown_category", "{ann}: annotation id 7: category_id 99 is not in 'categories' (known ids: [1])")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[_ann(7, category_id=99)]))


@case("annotation_of_unknown_image", "{ann}: annotation id 7: image_id 5 is not in 'images'")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[_ann(7, image_id=5)]))


@case("duplicate_annotation_ids", "{ann}: annotation id 7: duplicate annotation id; annotation ids must be unique")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[_ann(7), _ann(7)]))


@case("duplicate_image_ids", "{ann}: image id 1: duplicate image id in 'images'")
def _(ws):
    ws.image("a.jpg")
    images = [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}] * 2
    return lambda: ws.build(ws.coco(images=images))


@case("image_without_id", "{ann}: images[0]: each image needs an 'id' (integer or string), got {{'file_name': 'a.jpg'}}")  # noqa: E501
def _(ws):
    return lambda: ws.build(ws.coco(images=[{"file_name": "a.jpg"}]))


@case("image_without_file_name", "{ann}: image id 1: file_name must be a non-empty string, got None")
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.coco(images=[{"id": 1, "width": W, "height": H}]))


@case("width_sixty", "{ann}: image id 1: width must be a positive integer, got 'sixty'; fix it or remove the key")
def _(ws):
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "a.jpg", "width": "sixty", "height": H}]))


@case("height_negative", "{ann}: image id 1: height must be a positive integer, got -3; fix it or remove the key")
def _(ws):
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "a.jpg", "width": W, "height": -3}]))


@case("bbox_nan", "{ann}: annotation id 7: bbox must be 4 finite numbers [x, y, w, h], got [1, nan, 3, 4]")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[_ann(7, bbox=(1, float("nan"), 3, 4))]))


@case("bbox_three_numbers", "{ann}: annotation id 7: bbox must be 4 finite numbers [x, y, w, h], got [1, 2, 3]")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[{**_ann(7), "bbox": [1, 2, 3]}]))


@case("bbox_string_number", "{ann}: annotations[0]: bbox must be 4 finite numbers [x, y, w, h], got [1, '2', 3, 4]")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[{**_ann(None), "bbox": [1, "2", 3, 4]}]))


@case("area_not_a_number", "{ann}: annotation id 7: area must be a finite number >= 0, got 'big'; fix it or remove "
                           "the key")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[_ann(7, area="big")]))


@case("iscrowd_yes", "{ann}: annotation id 7: iscrowd must be 0 or 1, got 'yes'")
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[_ann(7, iscrowd="yes")]))


# ------------------------------------------------------------------ the path rule

_ESCAPE = ("{ann}: image id 1: file_name {name!r} resolves to {tmp}/outside.jpg, outside the image root {img} "
           "(symlinks are followed); fix the file_name or pass the folder that holds the images")


@case("path_escape_relative", _ESCAPE.replace("{name!r}", "'../outside.jpg'"))
def _(ws):
    ws.img.mkdir()
    Image.new("RGB", (W, H)).save(ws.tmp / "outside.jpg")
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "../outside.jpg", "width": W, "height": H}]))


@case("path_escape_absolute", _ESCAPE.replace("{name!r}", "'{tmp}/outside.jpg'"))
def _(ws):
    ws.img.mkdir()
    Image.new("RGB", (W, H)).save(ws.tmp / "outside.jpg")
    name = str(ws.tmp / "outside.jpg")
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": name, "width": W, "height": H}]))


@case("path_escape_symlink", _ESCAPE.replace("{name!r}", "'link.jpg'"))
def _(ws):
    ws.img.mkdir()
    Image.new("RGB", (W, H)).save(ws.tmp / "outside.jpg")
    (ws.img / "link.jpg").symlink_to(ws.tmp / "outside.jpg")
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "link.jpg", "width": W, "height": H}]))


def _check_symlink_inside(data, ws):
    assert data.dataset["image_path"] == [str(ws.img / "real" / "a.jpg")]


@case("symlink_inside_the_root_is_fine", _check_symlink_inside)
def _(ws):
    ws.image("real/a.jpg")
    (ws.img / "link.jpg").symlink_to(ws.img / "real" / "a.jpg")
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "link.jpg", "width": W, "height": H}]))


def _check_absolute_inside(data, ws):
    assert data.dataset["image_path"] == [str(ws.img / "a.jpg")] and data.report["paths_from_base_name"] == 0


@case("absolute_path_inside_the_root_is_fine", _check_absolute_inside)
def _(ws):
    ws.image("a.jpg")
    name = str(ws.img / "a.jpg")
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": name, "width": W, "height": H}]))


# ------------------------------------------------------------------ images checked once, at table build

_BAD_ADVICE = "replace or remove them, or set skip_bad_images to drop them"


@case("missing_image_file", "{ann}: 1 bad image(s): gone.jpg (image file not found); " + _BAD_ADVICE)
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "gone.jpg", "width": W, "height": H}]))


@case("zero_byte_image", "{ann}: 1 bad image(s): a.jpg (image file is empty (0 bytes)); " + _BAD_ADVICE)
def _(ws):
    ann = ws.coco()
    (ws.img / "a.jpg").write_bytes(b"")
    return lambda: ws.build(ann)


@case("truncated_jpeg", "{ann}: 1 bad image(s): a.jpg (cannot decode the image (image file is truncated (90 bytes not "
                        "processed))); " + _BAD_ADVICE)
def _(ws):
    ann = ws.coco()
    data = (ws.img / "a.jpg").read_bytes()
    (ws.img / "a.jpg").write_bytes(data[: len(data) // 2])
    return lambda: ws.build(ann)


@case("text_file_named_jpg", "{ann}: 1 bad image(s): a.jpg (not an image file (unrecognised format)); " + _BAD_ADVICE)
def _(ws):
    ann = ws.coco()
    (ws.img / "a.jpg").write_text("hello")
    return lambda: ws.build(ann)


@case("size_differs_from_json", "{ann}: 1 bad image(s): a.jpg (the image is 40x30 (after EXIF orientation) but the "
                                "annotations say 60x30); fix width/height in the annotation file, or set "
                                "skip_bad_images to drop them")
def _(ws):
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "a.jpg", "width": 60, "height": H}]) and
                            ws.image("a.jpg") and ws.tmp / "ann.json")


def _exif_jpeg(ws, name="r.jpg"):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: the raw 40x30 pixels display as 30x40
    return ws.image(name, exif=exif.tobytes())


@case("exif_rotated_json_in_raw_size", "{ann}: 1 bad image(s): r.jpg (the image is 30x40 (after EXIF orientation) "
                                       "but the annotations say 40x30); fix width/height in the annotation file, or "
                                       "set skip_bad_images to drop them")
def _(ws):
    _exif_jpeg(ws)
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "r.jpg", "width": W, "height": H}]))


def _check_exif_ok(data, ws):
    assert (data.dataset["width"], data.dataset["height"]) == ([H], [W])
    assert data.report["boxes_kept"] == 1 and data.report["boxes_clamped"] == 0


@case("exif_rotated_json_in_displayed_size", _check_exif_ok)
def _(ws):
    _exif_jpeg(ws)
    ann = ws.coco(images=[{"id": 1, "file_name": "r.jpg", "width": H, "height": W}],
                  annotations=[_ann(1, bbox=(1, 1, 20, 35))])
    return lambda: ws.build(ann)


def _check_unusual_images(data, ws):
    assert data.report["images"] == 3 and data.report["images_bad_dropped"] == 0
    assert data.dataset["width"] == [W, W, W]


@case("16bit_png_grayscale_and_cmyk_are_fine", _check_unusual_images)
def _(ws):
    ws.image("d.png", mode="I;16")
    ws.image("g.jpg", mode="L")
    ws.image("c.jpg", mode="CMYK")
    images = [{"id": i, "file_name": n, "width": W, "height": H} for i, n in enumerate(["d.png", "g.jpg", "c.jpg"])]
    return lambda: ws.build(ws.coco(images=images))


def _check_skipped(data, ws):
    assert data.report["images"] == 1 and data.report["images_bad_dropped"] == 2
    assert data.report["bad_images"] == ["b.jpg (image file is empty (0 bytes))", "c.jpg (image file not found)"]
    assert data.dataset["orig_image_id"] == ["1"]


@case("skip_bad_images_drops_and_lists_them", _check_skipped)
def _(ws):
    ws.image("a.jpg")
    (ws.img / "b.jpg").write_bytes(b"")
    images = [{"id": i, "file_name": n, "width": W, "height": H} for i, n in enumerate(["a.jpg", "b.jpg", "c.jpg"], 1)]
    ann = ws.coco(images=images, annotations=[_ann(1, image_id=2)])
    return lambda: ws.build(ann, skip_bad_images=True)


@case("every_image_bad_with_skip", "{ann}: no images to use (1 bad image(s) dropped, e.g. a.jpg (image file not "
                                   "found)); a split needs at least one image")
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "a.jpg", "width": W, "height": H}]),
                            skip_bad_images=True)


@case("empty_split", "{ann}: no images to use; a split needs at least one image")
def _(ws):
    ws.img.mkdir()
    return lambda: ws.build(ws.coco(images=[]))


@case("eleven_bad_images_name_ten", "{ann}: 11 bad image(s): " + "; ".join(f"{i:02d}.jpg (image file not found)"
                                                                             for i in range(10))
      + "; and 1 more; " + _BAD_ADVICE)
def _(ws):
    ws.img.mkdir()
    images = [{"id": i + 1, "file_name": f"{i:02d}.jpg", "width": W, "height": H} for i in range(11)]
    return lambda: ws.build(ws.coco(images=images))


# ------------------------------------------------------------------ unusual but correct COCO

def _check_ids_assigned(data, ws):
    assert data.dataset[0]["objects"]["id"] == [5, 6, 7]
    assert data.report["annotation_ids_assigned"] == 2 and data.report["boxes_kept"] == 3


@case("annotations_without_id_get_fresh_ids", _check_ids_assigned)
def _(ws):
    anns = [_ann(5), {**_ann(None), "id": None}, {k: v for k, v in _ann().items() if k != "id"}]
    return lambda: ws.build(ws.coco(annotations=anns))


def _check_iscrowd_strings(data, ws):
    assert data.dataset[0]["objects"]["iscrowd"] == [0, 1, 0]
    assert data.report["boxes_crowd"] == 1


@case("iscrowd_as_strings", _check_iscrowd_strings)
def _(ws):
    return lambda: ws.build(ws.coco(annotations=[_ann(1, iscrowd="0"), _ann(2, iscrowd="1"), _ann(3, iscrowd=False)]))


def _check_area_and_size(data, ws):
    assert data.dataset[0]["objects"]["area"] == [80.0]
    assert (data.dataset["width"], data.dataset["height"]) == ([W], [H])
    assert data.report["areas_computed"] == 1


@case("area_and_image_size_missing", _check_area_and_size)
def _(ws):
    ws.image("a.jpg")
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "a.jpg"}], annotations=[_ann(1)]))


def _check_numeric_strings(data, ws):
    assert (data.dataset["width"], data.dataset["height"]) == ([W], [H])


@case("width_as_numeric_string_or_float", _check_numeric_strings)
def _(ws):
    return lambda: ws.build(ws.coco(images=[{"id": 1, "file_name": "a.jpg", "width": "40", "height": 30.0}]) and
                            ws.image("a.jpg") and ws.tmp / "ann.json")


# ------------------------------------------------------------------ after the cache was built

def _cached(ws, then, **kwargs):
    ann = ws.coco(images=[{"id": i, "file_name": n, "width": W, "height": H} for i, n in enumerate(["a.jpg", "b.jpg"], 1)])  # noqa: E501
    ws.image("a.jpg")
    ws.image("b.jpg")
    assert not ws.build(ann, **kwargs).from_cache
    then()
    return lambda: ws.build(ann, **kwargs)


_CHANGED = "; they changed after the table was cached: restore them, or set skip_bad_images to rebuild the table " \
           "without them"


@case("image_deleted_after_caching", "{ann}: 1 bad image(s): b.jpg (image file not found)" + _CHANGED)
def _(ws):
    return _cached(ws, lambda: (ws.img / "b.jpg").unlink())


@case("image_broken_after_caching", "{ann}: 1 bad image(s): a.jpg (image file is empty (0 bytes))" + _CHANGED)
def _(ws):
    return _cached(ws, lambda: (ws.img / "a.jpg").write_bytes(b""))


def _check_rebuilt(data, ws):
    assert not data.from_cache and data.dataset["orig_image_id"] == ["1"]
    assert data.report["bad_images"] == ["b.jpg (image file not found)"]


@case("image_deleted_after_caching_with_skip", _check_rebuilt)
def _(ws):
    return _cached(ws, lambda: (ws.img / "b.jpg").unlink(), skip_bad_images=True)


def _check_still_cached(data, ws):
    assert data.from_cache and len(data.dataset) == 2


@case("image_touched_after_caching_is_rechecked_and_kept", _check_still_cached)
def _(ws):
    return _cached(ws, lambda: os.utime(ws.img / "a.jpg", ns=(1, 1)))


# ------------------------------------------------------------------ BDD100K

def _bdd(ws, frames, size=(W, H), **kwargs):
    ann = ws.text("ann.json", json.dumps(frames))
    return lambda: ws.build(ann, bdd_image_size=size, **kwargs)


def _box(category="car", x1=1, y1=1, x2=9, y2=9, **more):
    return {"id": "1", "category": category, "box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, **more}


def _check_bdd_first_without_labels(data, ws):
    assert data.report["frames"] == 2 and data.report["frames_without_labels"] == 1
    assert data.report["boxes_kept"] == 1


@case("bdd_first_frame_without_labels_key", _check_bdd_first_without_labels)
def _(ws):
    ws.image("a.jpg")
    ws.image("b.jpg")
    return _bdd(ws, [{"name": "a.jpg", "attributes": {}}, {"name": "b.jpg", "labels": [_box()]}])


@case("bdd_name_escapes", "{ann}: frame '../x.jpg': name '../x.jpg' is not a path inside the image folder (absolute "
                          "or with '..'); use the file name relative to the image folder")
def _(ws):
    ws.img.mkdir()
    return _bdd(ws, [{"name": "../x.jpg", "labels": []}])


@case("bdd_absolute_name", "{ann}: frame '/etc/hostname': name '/etc/hostname' is not a path inside the image folder "
                           "(absolute or with '..'); use the file name relative to the image folder")
def _(ws):
    ws.img.mkdir()
    return _bdd(ws, [{"name": "/etc/hostname", "labels": []}])


@case("bdd_symlink_escape", "{ann}: frame 'a.jpg': file_name 'a.jpg' resolves to {tmp}/outside.jpg, outside the "
                            "image root {img} (symlinks are followed); fix the file_name or pass the folder that holds "
                            "the images")
def _(ws):
    ws.img.mkdir()
    Image.new("RGB", (W, H)).save(ws.tmp / "outside.jpg")
    (ws.img / "a.jpg").symlink_to(ws.tmp / "outside.jpg")
    return _bdd(ws, [{"name": "a.jpg", "labels": []}])


@case("bdd_frames_not_bdd_image_size", "{ann}: 1 bad image(s): a.jpg (the image is 40x30 (after EXIF orientation) but "
                                       "the annotations say 1280x720); set bdd_image_size (--bdd_image_size W H) to "
                                       "the frames' size, or set skip_bad_images to drop them")
def _(ws):
    ws.image("a.jpg")
    return _bdd(ws, [{"name": "a.jpg", "labels": [_box()]}], size=(1280, 720))


@case("convert_output_is_a_folder", "--output {tmp}: is a folder; give a file name, e.g. {tmp}/coco.json")
def _(ws):
    labels = ws.text("ann.json", json.dumps([{"name": "a.jpg", "labels": []}]))
    return lambda: convert_file(labels, ws.tmp)


@case("convert_escaping_name", "{ann}: frame 'x/../../a.jpg': name 'x/../../a.jpg' is not a path inside the image "
                               "folder (absolute or with '..'); use the file name relative to the image folder")
def _(ws):
    labels = ws.text("ann.json", json.dumps([{"name": "x/../../a.jpg", "labels": []}]))
    return lambda: convert_file(labels, ws.tmp / "out.json")


# ------------------------------------------------------------------ scoring inputs

def _gt(annotations=None, images=None, categories=None):
    return {"images": images or [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
            "annotations": annotations if annotations is not None else
            [_ann(1, 1, bbox=(10, 10, 30, 30), area=900, iscrowd=0), _ann(2, 2, bbox=(5, 5, 50, 20), area=1000)],
            "categories": categories or [{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}]}


def _perfect(gt):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"]]


def _score(ws, gt, preds, **kwargs):
    g = ws.text("gt.json", json.dumps(gt))
    p = ws.text("pred.json", json.dumps(preds))
    return lambda: evaluate_files(str(g), str(p), **kwargs)


def _check_perfect(metrics, ws):
    assert metrics["map"] == 1.0 and metrics["per_class"] == {"car": 1.0, "bus": None}


@case("gt_duplicate_annotation_ids", "{tmp}/gt.json: annotation id 1: duplicate annotation id; annotation ids must "
                                     "be unique")
def _(ws):
    gt = _gt([_ann(1, 1, bbox=(10, 10, 30, 30)), _ann(1, 2, bbox=(5, 5, 50, 20))])
    return _score(ws, gt, _perfect(gt))


@case("gt_bbox_infinite", "{tmp}/gt.json: annotation id 1: bbox must be 4 finite numbers [x, y, w, h], got "
                          "[10, 10, inf, 30]")
def _(ws):
    return _score(ws, _gt([_ann(1, 1, bbox=(10, 10, float("inf"), 30))]), [])


@case("gt_without_categories", "{tmp}/gt.json: 'categories' is empty; list the classes as [{{id, name}}]")
def _(ws):
    gt = _gt()
    gt["categories"] = []
    return _score(ws, gt, [])


@case("gt_without_area_and_ids_and_with_string_iscrowd_scores_perfect", _check_perfect)
def _(ws):
    gt = _gt([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "iscrowd": "0"},
              {"image_id": 2, "category_id": 1, "bbox": [5, 5, 50, 20], "iscrowd": "0"}])
    return _score(ws, gt, _perfect(gt))


@case("pred_unknown_image", "{pred}: detection [1] (image_id 9): image_id is not in the ground truth's images (ids "
                            "are compared as written: 1 and \"1\" differ)")
def _(ws):
    gt = _gt()
    preds = _perfect(gt)
    preds[1]["image_id"] = 9
    return _score(ws, gt, preds)


@case("pred_string_image_id", "{pred}: detection [0] (image_id '1'): image_id is not in the ground truth's images "
                              "(ids are compared as written: 1 and \"1\" differ)")
def _(ws):
    gt = _gt()
    preds = _perfect(gt)
    preds[0]["image_id"] = "1"
    return _score(ws, gt, preds)


@case("pred_unknown_category", "{pred}: detection [0] (image_id 1): category_id 3 is not in the ground truth's "
                               "categories [1, 2]")
def _(ws):
    gt = _gt()
    return _score(ws, gt, [{**_perfect(gt)[0], "category_id": 3}])


@case("pred_nan_score", "{pred}: detection [0] (image_id 1): score must be a finite number, got nan")
def _(ws):
    gt = _gt()
    return _score(ws, gt, [{**_perfect(gt)[0], "score": float("nan")}])


@case("pred_nan_box", "{pred}: detection [0] (image_id 1): bbox must be 4 finite numbers [x, y, w, h] with w, h >= 0, "
                      "got [nan, 1, 2, 3]")
def _(ws):
    gt = _gt()
    return _score(ws, gt, [{**_perfect(gt)[0], "bbox": [float("nan"), 1, 2, 3]}])


@case("pred_box_xyxy_negative_width", "{pred}: detection [0] (image_id 1): bbox must be 4 finite numbers [x, y, w, h] "
                                      "with w, h >= 0, got [50, 50, 10, -5]")
def _(ws):
    gt = _gt()
    return _score(ws, gt, [{**_perfect(gt)[0], "bbox": [50, 50, 10, -5]}])


@case("pred_row_not_an_object", "{pred}: detection [0] is not an object {{image_id, category_id, bbox, score}}: "
                                "[1, 1, 10, 10, 30, 30, 0.9]")
def _(ws):
    return _score(ws, _gt(), [[1, 1, 10, 10, 30, 30, 0.9]])


@case("evaluate_output_is_a_folder", "--output {tmp}: is a folder; give a file name, e.g. {tmp}/metrics.json")
def _(ws):
    gt = _gt()
    return _score(ws, gt, _perfect(gt), output=str(ws.tmp))


def _bdd_score(ws, preds):
    gt = [{"name": "a.jpg", "labels": [_box()]}]
    return _score(ws, gt, preds, fmt="bdd100k")


@case("bdd_pred_labels_is_an_object", "{pred}: frame 'a.jpg': 'labels' must be a list, got dict; write one entry per "
                                      "detection")
def _(ws):
    return _bdd_score(ws, [{"name": "a.jpg", "labels": {**_box(), "score": 0.5}}])


@case("bdd_pred_nan_score", "{pred}: frame 'a.jpg', label id '1': 'score' must be a number (finite), got nan")
def _(ws):
    return _bdd_score(ws, [{"name": "a.jpg", "labels": [_box(score=float("nan"))]}])


@case("bdd_pred_unknown_category", "{pred}: frame 'a.jpg', label id '1': category 'tree' is not a BDD100K detection "
                                   "class (pedestrian, rider, car, truck, bus, train, motorcycle, bicycle, traffic "
                                   "light, traffic sign)")
def _(ws):
    return _bdd_score(ws, [{"name": "a.jpg", "labels": [_box("tree", score=0.5)]}])


def _check_bdd_perfect(metrics, ws):
    # one true positive: pycocotools' precision is tp / (tp + fp + eps) = 1 / (1 + 2**-52)
    assert metrics["map"] == metrics["per_class"]["car"] == pytest.approx(1.0, abs=1e-15)


@case("bdd_gt_first_frame_without_labels_scores", _check_bdd_perfect)
def _(ws):
    gt = [{"name": "b.jpg"}, {"name": "a.jpg", "labels": [_box()]}]
    return _score(ws, gt, [{"name": "a.jpg", "labels": [_box(score=0.7)]}], fmt="bdd100k")


# ------------------------------------------------------------------ the runner

@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_corpus(name, ws):
    make, expected = CASES[name]
    run = make(ws)
    if isinstance(expected, str):
        with pytest.raises(USER_ERRORS) as info:
            run()
        message = str(info.value)
        assert "\n" not in message
        assert message == ws.fmt(expected)
    else:
        expected(run(), ws)


# ------------------------------------------------------------------ bad images from the training command line

def test_bad_images_from_the_command_line(demo_dir, tmp_path, capsys):
    """By default a bad image stops the run in one line (before any model is built); --skip_bad_images true drops
    it and the data report counts and names it; --image_check exists looks only for the file."""
    from recipe.cli.main import train_main
    from recipe.config.load import parse_config
    from recipe.training.data import load_splits, report_data

    shutil.copytree(demo_dir / "train", tmp_path / "train")
    (tmp_path / "train" / "images" / "000003.jpg").write_bytes(b"")
    ann = tmp_path / "train" / "annotations.json"
    argv = [DEMO, "--demo_data", str(demo_dir), "--train-img", str(tmp_path / "train" / "images"), "--train-ann",
            str(ann), "--val-img", "", "--val-ann", "", "--output_dir", str(tmp_path / "out"), "--dataset_cache_dir",
            str(tmp_path / "cache")]
    with pytest.raises(SystemExit) as exit_info:
        train_main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {ann}: 1 bad image(s): 000003.jpg (image file is empty (0 bytes)); {_BAD_ADVICE}"]

    data, _, train_args, _ = parse_config([*argv, "--skip_bad_images", "true"])
    report_data(data, train_args, *load_splits(data, train_args))
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())["train"]
    assert (report["images"], report["images_bad_dropped"]) == (23, 1)
    assert report["bad_images"] == ["000003.jpg (image file is empty (0 bytes))"]
    assert "bad images dropped (skip_bad_images; listed below)" in capsys.readouterr().out

    data, _, train_args, _ = parse_config([*argv, "--image_check", "exists"])
    train, _ = load_splits(data, train_args)
    assert (train.report["images"], train.report["images_bad_dropped"]) == (24, 0)


# ------------------------------------------------------------------ scripts/check_data.py

def _check_data(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "check_data.py"), *map(str, args)],
                          capture_output=True, text=True, check=False)


def test_check_data_exit_codes(ws):
    """0 clean, 1 problems (listed, with the report), 2 unusable (one line)."""
    from recipe.tools.check_dataset import CheckDataArguments, check_data

    ann = ws.coco(annotations=[_ann(1)])
    assert check_data(CheckDataArguments(ann=str(ann), images=str(ws.img))) == 0
    (ws.img / "b.jpg").write_bytes(b"")
    ann = ws.coco(images=[{"id": 1, "file_name": "a.jpg", "width": W, "height": H},
                          {"id": 2, "file_name": "b.jpg", "width": W, "height": H}],
                  annotations=[_ann(1, bbox=(30, 20, 20, 20)), _ann(2, bbox=(0, 0, 0, 5))])
    proc = _check_data("--ann", ann, "--images", ws.img, "--format", "coco", "--report", ws.tmp / "r.json")
    assert proc.returncode == 1, proc.stderr
    assert "    b.jpg (image file is empty (0 bytes))" in proc.stdout.splitlines()
    assert proc.stdout.splitlines()[-1] == "problems: images_bad_dropped=1, boxes_dropped_degenerate=1, boxes_clamped=1"
    report = json.loads((ws.tmp / "r.json").read_text())
    assert (report["images"], report["boxes_in"], report["boxes_kept"]) == (1, 2, 1)

    shutil.rmtree(ws.img)
    ws.img.mkdir()
    proc = _check_data("--ann", ann, "--images", ws.img)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (f"error: {ann}: no images to use (2 bad image(s) dropped, e.g. a.jpg (image file not found)); "
         "a split needs at least one image")]
