"""Models that never read the pixel mask (RT-DETR style, YOLOS) see the padded canvas as the image: the
collator puts their target boxes in the canvas's frame and post-processing maps boxes back with `frame_size`.

The detector below is what such a model becomes when trained perfectly: it finds the white rectangle in the
padded batch tensor and reports it normalised to the whole tensor. Its boxes must come out in the original
image's pixels, and the collated targets must be exactly what it outputs."""

import inspect
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers

from recipe.core.boxes import canvas_frame_size, labels_on_canvas
from recipe.inference.predict import detect
from recipe.models.families import ignores_pixel_mask
from recipe.models.postprocess import DET_BOX, postprocess_detections
from recipe.pipeline.collate import DetectionCollator
from recipe.pipeline.transforms import make_labels

ORIG_HW = (480, 640)  # the file's image; resized to 240x320 below, padded to 256x352 by a larger neighbour
BOX_ORIG = (80.0, 120.0, 160.0, 240.0)  # xywh_abs in the original image


class CanvasDetector(torch.nn.Module):
    config = SimpleNamespace(model_type="rt_detr")

    def forward(self, pixel_values, pixel_mask=None):
        _, _, height, width = pixel_values.shape
        boxes = []
        for image in pixel_values:
            ys, xs = torch.nonzero(image[0] > 1.0, as_tuple=True)  # white: ~2.2 after ImageNet normalisation
            x0, x1, y0, y1 = xs.min().item(), xs.max().item() + 1, ys.min().item(), ys.max().item() + 1
            boxes.append([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])
        return SimpleNamespace(logits=torch.full((len(boxes), 1, 1), 10.0), pred_boxes=torch.tensor(boxes)[:, None])


def _features():
    small = torch.zeros((3, 240, 320), dtype=torch.uint8)
    small[:, 60:180, 40:120] = 255  # the original box halved: x 40..120, y 60..180
    large = torch.zeros((3, 256, 352), dtype=torch.uint8)
    large[:, 10:20, 10:20] = 255
    return [{"pixel_values": small, "labels": make_labels(np.array([[40.0, 60.0, 80.0, 120.0]]), [0], [0], 1,
                                                          ORIG_HW, (240, 320))},
            {"pixel_values": large, "labels": make_labels(np.array([[10.0, 10.0, 10.0, 10.0]]), [0], [0], 2,
                                                          (256, 352), (256, 352))}]


def test_labels_on_canvas_by_hand():
    labels = {"boxes": torch.tensor([[0.5, 0.5, 0.25, 0.5]]), "orig_size": torch.tensor([480, 640]),
              "class_labels": torch.tensor([3])}
    out = labels_on_canvas(labels, (240, 320), (256, 352))
    np.testing.assert_allclose(out["boxes"].numpy(), [[160 / 352, 120 / 256, 80 / 352, 120 / 256]], rtol=1e-6)
    assert out["frame_size"].tolist() == [512.0, 704.0]  # 480 * 256 / 240, 640 * 352 / 320
    assert out["class_labels"] is labels["class_labels"] and labels["boxes"].tolist() == [[0.5, 0.5, 0.25, 0.5]]
    assert labels_on_canvas({}, (240, 320), (256, 352)) == {}
    assert canvas_frame_size(torch.tensor([[100, 200]]), torch.tensor([[50, 100]]), (64, 128)).tolist() == [[128, 256]]


def test_targets_are_what_a_perfect_mask_blind_detector_outputs():
    collate = DetectionCollator(transformers.DeformableDetrImageProcessor(), boxes_on_canvas=True)
    batch = collate(_features())
    outputs = CanvasDetector()(batch["pixel_values"])
    targets = torch.cat([label["boxes"] for label in batch["labels"]])
    np.testing.assert_allclose(outputs.pred_boxes[:, 0].numpy(), targets.numpy(), atol=1e-6)
    # the trainer's post-processing (frame_size per label) puts the box back in the original image
    frames = torch.stack([label["frame_size"] for label in batch["labels"]])
    detections = postprocess_detections(outputs.logits, outputs.pred_boxes, frames, top_k=1)
    np.testing.assert_allclose(detections[0, 0, DET_BOX].numpy(), BOX_ORIG, atol=1e-3)
    np.testing.assert_allclose(detections[1, 0, DET_BOX].numpy(), [10, 10, 10, 10], atol=1e-3)


def test_without_the_canvas_frame_the_targets_disagree():
    """What the collator did before: the image-normalised target of the padded image is off by canvas/size."""
    batch = DetectionCollator(transformers.DeformableDetrImageProcessor())(_features())
    outputs = CanvasDetector()(batch["pixel_values"])
    assert "frame_size" not in batch["labels"][0]
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(outputs.pred_boxes[0, 0].numpy(), batch["labels"][0]["boxes"][0].numpy(), atol=1e-3)


def test_predict_maps_canvas_boxes_to_the_original_image():
    from recipe.inference.inputs import collate_readable

    features = _features()
    collate = collate_readable(CanvasDetector.config, transformers.DeformableDetrImageProcessor())
    images = [np.zeros((*ORIG_HW, 3), np.uint8), np.zeros((256, 352, 3), np.uint8)]  # the files as read
    batch = collate([{"index": i, "image": image, "pixel_values": f["pixel_values"]}
                     for i, (image, f) in enumerate(zip(images, features))])
    detections = detect(CanvasDetector(), batch, torch.device("cpu"), top_k=1)
    np.testing.assert_allclose(detections[0, 0, DET_BOX], BOX_ORIG, atol=1e-3)


def _one_checkpoint_per_family() -> dict[str, str]:
    from published import PUBLISHED

    first = {}
    for hub_id, entry in PUBLISHED.items():
        first.setdefault(entry.model_type, hub_id)
    return first


@pytest.mark.parametrize("model_type", sorted(_one_checkpoint_per_family()))
def test_which_families_ignore_the_pixel_mask(model_type):
    """Behaviour, not a list: a mask that hides the lower half changes a model's outputs unless it ignores it."""
    from transformers import AutoConfig, AutoModelForObjectDetection

    from published import shrunk_config
    from recipe.models.families import size_multiple

    config = AutoConfig.for_model(**shrunk_config(_one_checkpoint_per_family()[model_type]))
    torch.manual_seed(0)
    model = AutoModelForObjectDetection.from_config(config).eval()
    multiple = max(32, size_multiple(config))
    side = -(-128 // multiple) * multiple
    pixels = torch.randn(1, 3, side, side)
    mask = torch.ones(1, side, side, dtype=torch.long)
    half = mask.clone()
    half[:, side // 2:] = 0
    with torch.no_grad():
        if "pixel_mask" not in inspect.signature(model.forward).parameters:
            outputs = [model(pixel_values=pixels)] * 2
        else:
            outputs = [model(pixel_values=pixels, pixel_mask=m) for m in (mask, half)]
    same = torch.equal(outputs[0].logits, outputs[1].logits) and torch.equal(outputs[0].pred_boxes,
                                                                             outputs[1].pred_boxes)
    assert ignores_pixel_mask(model_type) is same
