"""Invariants of the labels that reach the model, on every BCCD image under the TRAIN transforms."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from conftest import shared, write_json
from recipe.data.builder import load_detection_dataset
from recipe.pipeline.augment import build_augmentation
from recipe.pipeline.transforms import AugmentationSeeds, make_labels, make_transform


def voc_to_coco(annotation_dir, out_path):
    """BCCD's VOC XML (1-based corners) -> COCO with w = xmax - xmin, so its two point boxes become zero-size."""
    names = ["RBC", "WBC", "Platelets"]
    images, annotations = [], []
    for n, xml in enumerate(sorted(annotation_dir.glob("*.xml")), start=1):
        root = ET.parse(xml).getroot()
        images.append({"id": n, "file_name": root.findtext("filename"),
                       "width": int(root.findtext("size/width")), "height": int(root.findtext("size/height"))})
        for obj in root.findall("object"):
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            annotations.append({"id": len(annotations) + 1, "image_id": n,
                                "category_id": names.index(obj.findtext("name")) + 1,
                                "bbox": [x1 - 1, y1 - 1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": 0})
    return write_json(out_path, {"images": images, "annotations": annotations,
                                 "categories": [{"id": i + 1, "name": c} for i, c in enumerate(names)]})


def check_labels(dataset, num_classes):
    transform = make_transform(build_augmentation(True, shortest_edges=[256, 288, 320], longest_edge=400,
                                                  eval_size=288, crop_prob=0.5), seeds=AugmentationSeeds(0))
    seen_images = 0
    for start in range(0, len(dataset), 16):
        rows = dataset[start:start + 16]
        out = transform(rows)
        for pixels, labels, _objects, h, w, image_id in zip(out["pixel_values"], out["labels"], rows["objects"],
                                                           rows["height"], rows["width"], rows["image_id"]):
            boxes, classes = labels["boxes"], labels["class_labels"]
            assert boxes.dtype == torch.float32 and boxes.shape == (len(classes), 4)
            assert classes.dtype == torch.int64
            assert bool(((classes >= 0) & (classes < num_classes)).all())
            assert bool(((boxes >= 0) & (boxes <= 1)).all()), image_id
            assert bool(((boxes[:, 2] > 0) & (boxes[:, 3] > 0)).all()), image_id
            # cxcywh: the box stays inside the unit square
            assert bool((boxes[:, 0] - boxes[:, 2] / 2 >= -1e-6).all())
            assert bool((boxes[:, 0] + boxes[:, 2] / 2 <= 1 + 1e-6).all())
            assert labels["image_id"].tolist() == [image_id]
            assert labels["orig_size"].tolist() == [h, w]
            assert labels["size"].tolist() == list(pixels.shape[-2:])
            assert min(pixels.shape[-2:]) in (256, 288, 320) or max(pixels.shape[-2:]) == 400
            seen_images += 1
    assert seen_images == len(dataset)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bccd_voc_with_zero_size_boxes(tmp_path):
    torch.manual_seed(0)
    np.random.seed(0)
    ann = voc_to_coco(shared("bccd", "BCCD", "Annotations"), tmp_path / "voc.json")
    data = load_detection_dataset(ann, shared("bccd", "BCCD", "JPEGImages"), cache_dir=str(tmp_path / "cache"))
    assert len(data.dataset) == 364 and data.report["boxes_in"] == 4888
    assert data.report["boxes_dropped_degenerate"] == 2  # BloodImage_00338 and _00343's point boxes
    check_labels(data.dataset, 3)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bccd_coco_export_all_splits(tmp_path):
    folder = shared("bccd", "coco_by_yukkyo_voc2coco")
    total = 0
    for split in ("train", "val", "test"):
        data = load_detection_dataset(folder / f"bccd_{split}_cocoformat.json", shared("bccd", "BCCD", "JPEGImages"),
                                      cache_dir=str(tmp_path / "cache"))
        check_labels(data.dataset, 3)
        total += len(data.dataset)
    assert total == 364


def test_crowd_boxes_never_reach_the_loss():
    labels = make_labels(np.array([[0, 0, 10, 10], [5, 5, 10, 10]]), [0, 1], [1, 0], image_id=3,
                         orig_hw=(20, 40), size_hw=(20, 40))
    assert labels["class_labels"].tolist() == [1]
    torch.testing.assert_close(labels["boxes"], torch.tensor([[0.25, 0.5, 0.25, 0.5]]))


def test_image_without_boxes_gives_empty_labels():
    labels = make_labels(np.zeros((0, 4)), [], [], image_id=1, orig_hw=(5, 5), size_hw=(5, 5))
    assert labels["boxes"].shape == (0, 4) and labels["class_labels"].shape == (0,)
