"""The originals' augmentation ops (recipe/pipeline/original_ops.py) on hand-made boxes, torchvision as the oracle
where it has the op, and the presets (recipe/pipeline/presets.py) end to end: boxes exact, cxcywh_norm clamped,
phases as the originals' schedules, the same draws for the same (seed, epoch, image)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from recipe.core.errors import ConfigError
from recipe.pipeline import original_ops as ops
from recipe.pipeline.presets import PRESETS, Phases, PresetAugmentation, mixes_images


def sample(boxes, h=100, w=200, category=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    image = np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3).astype(np.uint8)
    return ops.Sample(image, boxes, category if category is not None else np.arange(len(boxes)))


def test_zoom_out_pastes_the_image_and_moves_boxes_by_the_offset():
    s = sample([[2, 3, 6, 8]], h=10, w=20)
    out = ops.zoom_out(s, left=5, top=7, canvas_h=30, canvas_w=40)
    assert out.image.shape == (30, 40, 3) and out.boxes.tolist() == [[7, 10, 11, 15]]
    assert np.array_equal(out.image[7:17, 5:25], s.image) and out.image[:7].max() == 0 and out.image[:, :5].max() == 0


def test_zoom_out_draws_a_canvas_of_one_to_four_times_the_image():
    for seed in range(50):
        left, top, ch, cw = ops.draw_zoom_out(random.Random(seed), 10, 20)
        assert 10 <= ch <= 40 and 20 <= cw <= 80 and 0 <= left <= cw - 20 and 0 <= top <= ch - 10


def test_crop_moves_clamps_and_zeroes_boxes_whose_centre_is_outside_then_sanitize_drops_them():
    s = sample([[10, 10, 30, 30], [60, 60, 90, 90], [0, 0, 100, 100]], h=100, w=100)
    inside = np.array([False, False, True])  # centres (20, 20), (75, 75) are not strictly inside (20, 20)-(70, 70)
    out = ops.crop(s, top=20, left=20, height=50, width=50, inside=inside)
    assert out.image.shape == (50, 50, 3) and np.array_equal(out.image, s.image[20:70, 20:70])
    assert out.boxes.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 50, 50]]
    kept = ops.sanitize(out)
    assert kept.boxes.tolist() == [[0, 0, 50, 50]] and kept.category.tolist() == [2]


def test_iou_crop_windows_hold_a_box_centre_within_the_originals_limits():
    boxes = np.array([[10, 10, 60, 40], [120, 50, 190, 95]], dtype=np.float64)
    crops = [ops.draw_iou_crop(random.Random(seed), 100, 200, boxes) for seed in range(200)]
    assert any(c is None for c in crops) and sum(c is not None for c in crops) > 100  # option 1.0 is 1 in 7
    for top, left, h, w, inside in (c for c in crops if c is not None):
        assert top >= 0 and top + h <= 100 and left >= 0 and left + w <= 200
        assert int(100 * 0.3) <= h and int(200 * 0.3) <= w and 0.5 <= w / h <= 2
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        assert inside.tolist() == ((left < cx) & (cx < left + w) & (top < cy) & (cy < top + h)).tolist()
        assert inside.any()
    assert ops.draw_iou_crop(random.Random(0), 100, 200, np.zeros((0, 4))) is None  # no box: left as it is


def test_sanitize_drops_small_negative_and_outside_boxes_as_torchvision():
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    boxes = [[0, 0, 10, 10], [5, 5, 5.5, 20], [-1, 0, 10, 10], [0, 0, 201, 10], [3, 3, 3.9, 3.9], [190, 90, 200, 100]]
    s = sample(boxes)
    ours = ops.sanitize(s)
    tv = v2.SanitizeBoundingBoxes(min_size=1)({"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes), format="XYXY",
                                                                                canvas_size=(100, 200)),
                                               "labels": torch.arange(len(boxes))})
    assert ours.category.tolist() == tv["labels"].tolist() == [0, 5]
    assert ours.boxes.tolist() == [[0, 0, 10, 10], [190, 90, 200, 100]]


def test_hflip_and_resize_move_boxes_with_the_pixels():
    s = sample([[10, 20, 30, 40]], h=100, w=200)
    flipped = ops.hflip(s)
    assert flipped.boxes.tolist() == [[170, 20, 190, 40]] and np.array_equal(flipped.image, s.image[:, ::-1])
    small = ops.resize(s, 50, 100)
    assert small.image.shape == (50, 100, 3) and small.boxes.tolist() == [[5, 10, 15, 20]]


@pytest.mark.parametrize(("hw", "side", "cap"), [((480, 640), 800, None), ((640, 480), 800, 1333),
                                                 ((100, 1000), 800, 1333), ((333, 500), 320, None),
                                                 ((720, 1280), 400, 600)])
def test_shortest_edge_size_is_torchvisions(hw, side, cap):
    from torchvision.transforms.v2.functional._geometry import _compute_resized_output_size

    assert list(ops.shortest_edge_hw(*hw, side, cap)) == _compute_resized_output_size(hw, [side], cap)


def test_size_crop_keeps_boxes_with_area_left():
    s = sample([[10, 10, 30, 30], [150, 80, 190, 95], [0, 0, 200, 100]])
    out = ops.size_crop(s, top=0, left=0, height=50, width=100)
    assert out.boxes.tolist() == [[10, 10, 30, 30], [0, 0, 100, 50]] and out.category.tolist() == [0, 2]
    for seed in range(30):
        top, left, h, w = ops.draw_size_crop(random.Random(seed), 500, 700, 384, 600)
        assert 384 <= h <= 500 and 384 <= w <= 600 and top + h <= 500 and left + w <= 700


def test_mosaic_places_four_images_at_the_corners_of_a_canvas_twice_their_size():
    samples = [ops.Sample(np.full((10, 20, 3), 50 * (i + 1), np.uint8), [[0, 0, 20, 10]], [i]) for i in range(4)]
    out = ops.mosaic(samples, output_size=5)  # each resized to 5 x 10
    assert out.image.shape == (10, 20, 3)
    assert out.boxes.tolist() == [[0, 0, 10, 5], [10, 0, 20, 5], [0, 5, 10, 10], [10, 5, 20, 10]]
    assert out.category.tolist() == [0, 1, 2, 3]
    assert [int(out.image[y, x, 0]) for x, y in ((0, 0), (10, 0), (0, 5), (10, 5))] == [50, 100, 150, 200]


def test_affine_scale_and_translate_move_boxes_exactly():
    s = sample([[10, 5, 20, 15]], h=20, w=40)
    out = ops.affine(s, angle=0.0, translate=(3, 4), scale=2.0)  # about the centre (20, 10)
    assert out.boxes.tolist() == [[3, 4, 23, 20]]  # y2 = 2 * (15 - 10) + 10 + 4 = 24, clamped to 20


def test_affine_rotation_turns_boxes_with_the_pixels():
    image = np.zeros((20, 20, 3), np.uint8)
    image[0:5, 0:10] = 255  # the box [0, 0, 10, 5]
    out = ops.affine(ops.Sample(image, [[0, 0, 10, 5]], [0]), angle=90.0, translate=(0, 0), scale=1.0)
    assert np.allclose(out.boxes, [[0, 10, 5, 20]])
    ys, xs = np.nonzero(out.image[..., 0])
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (0, 10, 5, 20)  # the pixels are where the box is


def test_mixup_blends_pixels_and_keeps_both_images_boxes():
    a = ops.Sample(np.full((4, 4, 3), 100, np.uint8), [[0, 0, 2, 2]], [1])
    b = ops.Sample(np.full((4, 4, 3), 201, np.uint8), [[1, 1, 4, 4]], [2])
    out = ops.mixup(a, b, beta=0.5)
    assert out.image.max() == out.image.min() == 150  # rint(150.5): half to even
    assert out.boxes.tolist() == [[0, 0, 2, 2], [1, 1, 4, 4]] and out.category.tolist() == [1, 2]
    assert 0.45 <= ops.draw_mixup_beta(random.Random(3)) <= 0.55
    with pytest.raises(ValueError, match="one size"):
        ops.mixup(a, ops.Sample(np.zeros((5, 4, 3), np.uint8), [], []), 0.5)


def test_photometric_distort_is_torchvisions_given_the_same_draws():
    from torchvision.transforms import v2

    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for seed in range(6):
        params = ops.draw_photometric(random.Random(seed), p=0.5)
        tv_params = {"brightness_factor": params["brightness"], "contrast_factor": params["contrast"],
                     "saturation_factor": params["saturation"], "hue_factor": params["hue"],
                     "contrast_before": params["contrast_before"],
                     "channel_permutation": None if params["permutation"] is None else torch.tensor(
                         params["permutation"])}
        want = v2.RandomPhotometricDistort(p=0.5).transform(torch.from_numpy(image).permute(2, 0, 1), tv_params)
        assert np.array_equal(ops.photometric_distort(image, params), want.permute(1, 2, 0).numpy())


# --- the presets ---

def test_phases_are_the_originals_schedules():
    deim = PRESETS["deim"]
    assert Phases.of(deim, 58, 8) == Phases(4, 29, 50)      # DEIM configs/base/deim.yml: epoch [4, 29, 50]
    assert Phases.of(deim, 132, 12) == Phases(4, 64, 120)   # deim_hgnetv2_s_coco.yml: [4, 64, 120]
    assert Phases.of(deim, 26, 0) == Phases(2, 15, 26)      # shorter runs: the first phase scaled
    assert Phases.of(PRESETS["rtdetr"], 72, 2) == Phases(0, 35, 70)  # no Mosaic / MixUp: mix_end unused


class ListPool:
    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def load(self, index):
        s = self.samples[index]
        return ops.Sample(s.image.copy(), s.boxes.copy(), s.category.copy(), s.iscrowd.copy())


def scenes(n=6, h=120, w=160):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        x, y = rng.uniform(0, w - 40), rng.uniform(0, h - 30)
        out.append(ops.Sample(rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                              [[x, y, x + 40, y + 30], [5, 5, 25, 45]], [i % 3, 1]))
    return out


@pytest.mark.parametrize("name", [n for n in PRESETS if PRESETS[n] is not None])
def test_each_preset_keeps_boxes_inside_the_image_and_repeats_per_seed(name):
    from recipe.pipeline.transforms import make_labels

    pool = ListPool(scenes())
    aug = PresetAugmentation(name, resize="square", sides=[96, 112, 128], longest_edge=128, eval_size=128,
                             epochs=10, pool=pool if mixes_images(name) else None)
    aug.epoch = aug.phases.start
    counts = []
    for seed in range(40):
        s = pool.load(seed % len(pool))
        xywh = np.concatenate([s.boxes[:, :2], s.boxes[:, 2:] - s.boxes[:, :2]], axis=1)
        outs = []
        for _ in range(2):
            aug.set_random_seed(seed)
            outs.append(aug(image=s.image, bboxes=xywh, category=s.category.tolist(), iscrowd=[0, 0]))
        a, b = outs
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["bboxes"], b["bboxes"])
        h, w = a["image"].shape[:2]
        assert h == w and h in (96, 112, 128)
        boxes = a["bboxes"]
        assert (boxes[:, 2:] >= 1).all() and (boxes[:, :2] >= 0).all()
        assert (boxes[:, 0] + boxes[:, 2] <= w + 1e-9).all() and (boxes[:, 1] + boxes[:, 3] <= h + 1e-9).all()
        labels = make_labels(boxes, a["category"], a["iscrowd"], 0, (120, 160), (h, w))
        assert ((labels["boxes"] >= 0) & (labels["boxes"] <= 1)).all() and (labels["boxes"][:, 2:] > 0).all()
        counts.append(len(boxes))
    if name == "deim":
        assert max(counts) > 4  # a mosaic or a mixup brought other images' boxes
    else:
        assert max(counts) <= 2


def test_final_phase_keeps_the_flip_and_the_evaluation_size():
    s = scenes(1)[0]
    xywh = np.concatenate([s.boxes[:, :2], s.boxes[:, 2:] - s.boxes[:, :2]], axis=1)
    aug = PresetAugmentation("rtdetr", resize="square", sides=[96, 112], longest_edge=128, eval_size=128, epochs=10,
                             no_aug_epochs=2)
    aug.epoch = 8
    flips = set()
    for seed in range(20):
        aug.set_random_seed(seed)
        out = aug(image=s.image, bboxes=xywh, category=[0, 1], iscrowd=[0, 0])
        assert out["image"].shape[:2] == (128, 128)
        scaled = xywh * [128 / 160, 128 / 120, 128 / 160, 128 / 120]
        flipped = scaled.copy()
        flipped[:, 0] = 128 - scaled[:, 0] - scaled[:, 2]
        same, mirrored = np.allclose(out["bboxes"], scaled), np.allclose(out["bboxes"], flipped)
        assert same or mirrored  # no photometric, zoom-out or crop: only the flip and the resize
        flips.add(mirrored)
    assert flips == {True, False}


def test_presets_are_the_configs_choices_and_their_conflicts_are_errors():
    from recipe.config.arguments import DataArguments
    from recipe.config.load import parse_config

    choices = DataArguments.__dataclass_fields__["augmentation"].metadata["choices"]
    assert list(choices) == list(PRESETS)
    with pytest.raises(ConfigError, match="crop_prob 0.5 / color_jitter_prob 0.5 would have no effect"):
        DataArguments(augmentation="rtdetr", crop_prob=0.5)
    assert DataArguments(augmentation="deim").augmentation == "deim"
    families = {"rt_detr": "rtdetr", "rt_detr_v2": "rtdetr", "d_fine": "rtdetr", "deimv2": "deim", "rf_detr": "rfdetr",
                "lw_detr": "rfdetr", "demo": "deformable", "deformable_detr_coco": "deformable"}
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for config, preset in families.items():
        assert parse_config([str(root / "configs" / f"{config}.yaml")]).data.augmentation == preset, config


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_deim_preset_reads_its_pool_in_spawned_workers_as_in_process(demo_dir, tmp_path):
    """The transform (preset, pool of table rows, epoch in shared memory) crosses `spawn`, and a worker draws the
    same mosaics and mixups as the main process for the same (seed, epoch, image)."""
    from torch.utils.data import DataLoader

    from recipe.data.source import data_source, load_table
    from recipe.pipeline.transforms import AugmentationSeeds, ImagePool, make_transform

    table = load_table(data_source(annotation_file=str(demo_dir / "train" / "annotations.json"),
                                   image_root=str(demo_dir / "train" / "images"), cache_dir=str(tmp_path))).dataset
    seeds = AugmentationSeeds(5)
    aug = PresetAugmentation("deim", resize="square", sides=[128], longest_edge=128, eval_size=128, epochs=10,
                             epoch_of=seeds, pool=ImagePool(table))
    seeds.set_epoch(aug.phases.start)
    dataset = table.with_transform(make_transform(aug, seeds=seeds))
    in_process = [dataset[i] for i in range(8)]
    loader = DataLoader(dataset, batch_size=None, num_workers=1, multiprocessing_context="spawn")
    in_worker = [item for _, item in zip(range(8), loader)]
    assert max(len(x["labels"]["boxes"]) for x in in_process) > max(len(table[i]["objects"]["bbox"]) for i in range(8))
    for a, b in zip(in_process, in_worker):
        assert torch.equal(a["pixel_values"], b["pixel_values"])
        assert torch.equal(a["labels"]["boxes"], b["labels"]["boxes"])
