import torch
from transformers import DeformableDetrImageProcessor

from recipe.collate import DetectionCollator


def test_pads_bottom_right_and_masks_real_pixels():
    collate = DetectionCollator(DeformableDetrImageProcessor())
    a = {"pixel_values": torch.ones(3, 2, 3), "labels": {"class_labels": torch.tensor([1])}}
    b = {"pixel_values": torch.full((3, 3, 1), 2.0), "labels": {"class_labels": torch.tensor([], dtype=torch.long)}}
    batch = collate([a, b])
    assert batch["pixel_values"].shape == (2, 3, 3, 3)
    assert batch["pixel_mask"].dtype == torch.int64
    assert batch["pixel_mask"].tolist() == [[[1, 1, 1], [1, 1, 1], [0, 0, 0]],
                                            [[1, 0, 0], [1, 0, 0], [1, 0, 0]]]
    assert batch["pixel_values"][0, 0].tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0]]
    assert batch["pixel_values"][1, 2].tolist() == [[2, 0, 0], [2, 0, 0], [2, 0, 0]]
    assert batch["labels"][0] is a["labels"] and batch["labels"][1] is b["labels"]
