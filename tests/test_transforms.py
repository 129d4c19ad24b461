"""Determinism of the training transform: seeded per image and epoch, repeatable across runs and workers."""

import albumentations as A
import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from recipe.pipeline.augment import build_augmentation, reseed
from recipe.pipeline.transforms import AugmentationSeeds, StageTimer, make_transform

AUG = dict(shortest_edges=[48, 56, 64], longest_edge=96, eval_size=64, crop_prob=0.5, color_jitter_prob=0.5)


def _rows(tmp_path, count=8, distinct=True):
    rng = np.random.default_rng(0)
    same = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    rows = {"image_id": [], "image_path": [], "height": [], "width": [], "objects": []}
    for i in range(count):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8) if distinct else same).save(path)
        rows["image_id"].append(i + 1)
        rows["image_path"].append(str(path))
        rows["height"].append(60)
        rows["width"].append(80)
        rows["objects"].append({"bbox": [[4.0, 5.0, 30.0, 20.0], [40.0, 30.0, 25.0, 22.0]], "category": [0, 1],
                                "iscrowd": [0, 0]})
    return rows


def _run(transform, rows, batches=3):
    """Flattened outputs of `batches` calls over the same rows (the augmentation's stream moves on)."""
    outs = []
    for _ in range(batches):
        out = transform(rows)
        outs += [(p.clone(), {k: v.clone() for k, v in lab.items()}) for p, lab in zip(out["pixel_values"],
                                                                                      out["labels"])]
    return outs


def _equal(a, b, label_keys=("boxes", "class_labels", "image_id", "orig_size", "size")):
    return len(a) == len(b) and all(pa.shape == pb.shape and torch.equal(pa, pb) and
                                    all(torch.equal(la[k], lb[k]) for k in label_keys)
                                    for (pa, la), (pb, lb) in zip(a, b))


def test_same_seed_same_outputs_other_seed_differs(tmp_path):
    rows = _rows(tmp_path)
    runs = [_run(make_transform(build_augmentation(True, **AUG, seed=seed)), rows)
            for seed in (3, 3, 4)]
    assert _equal(runs[0], runs[1])
    assert not _equal(runs[0], runs[2])


def _by_image(out) -> dict:
    return {int(lab["image_id"]): (p, lab) for p, lab in zip(out["pixel_values"], out["labels"])}


def test_seeds_fix_each_image_and_epoch_whatever_else_draws(tmp_path):
    """(seed, epoch, image_id) alone decide: not torch's generator, not the batch an image comes in, not what
    the augmentation drew before."""
    rows = _rows(tmp_path)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(len(runs))  # what torch's generator holds must not matter
        runs.append(_run(make_transform(build_augmentation(True, **AUG, seed=len(runs)),
                                        seeds=AugmentationSeeds(seed)), rows, batches=1))
    assert _equal(runs[0], runs[1])
    assert not _equal(runs[0], runs[2])
    seeds = AugmentationSeeds(0)
    transform = make_transform(build_augmentation(True, **AUG), seeds=seeds)
    reversed_rows = {k: v[::-1] for k, v in rows.items()}
    assert _equal(_run(transform, reversed_rows, batches=1)[::-1], runs[0])  # other batches, same images
    seeds.set_epoch(1)
    epoch1 = _run(transform, rows, batches=1)
    assert not _equal(epoch1, runs[0], label_keys=("boxes", "size"))
    seeds.set_epoch(0)
    assert _equal(_run(transform, rows, batches=1), runs[0])


def _loader_run(dataset, workers, seeds=None, epochs=(0,), persistent=False):
    torch.manual_seed(len(dataset))  # workers are seeded from torch (base_seed + worker_id); that must not matter
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=workers, collate_fn=list,
                                         persistent_workers=persistent)
    out = []
    for epoch in epochs:
        if seeds is not None:
            seeds.set_epoch(epoch)
        out.append([[(row["pixel_values"], row["labels"]) for row in batch] for batch in loader])
    return out


def test_dataloader_workers_differ_and_runs_repeat(tmp_path):
    rows = _rows(tmp_path, count=8, distinct=False)  # one image 8 times: only the augmentation differs
    seeds = AugmentationSeeds(0)
    dataset = datasets.Dataset.from_dict(rows).with_transform(make_transform(build_augmentation(True, **AUG),
                                                                             seeds=seeds))
    (first,), (second,) = _loader_run(dataset, 2), _loader_run(dataset, 2)
    assert len(first) == 2  # batch 0 from worker 0, batch 1 from worker 1
    assert all(_equal(a, b) for a, b in zip(first, second))
    assert not _equal(first[0], first[1], label_keys=("boxes", "size"))  # the workers' images differ
    (in_process,) = _loader_run(dataset, 0)
    assert all(_equal(a, b) for a, b in zip(first, in_process))  # as many workers as you like: same batches
    # Persistent workers (forked once) follow set_epoch: each epoch differs, and equals that epoch in-process.
    persistent = _loader_run(dataset, 2, seeds, epochs=(0, 1), persistent=True)
    assert not _equal(persistent[0][0], persistent[1][0], label_keys=("boxes", "size"))
    assert all(_equal(a, b) for a, b in zip(persistent[1], _loader_run(dataset, 0, seeds, epochs=(1,))[0]))


def test_reseed_decorrelates_child_transforms():
    """`Compose(seed=s)` seeds every child with s (albumentations 2.0.8): two flips with p=0.5 then always
    agree. `reseed` shares one stream, so they decide independently."""
    image = np.zeros((4, 4, 3), np.uint8)

    def agreement(compose):
        same = 0
        for _ in range(200):
            names = {name for name, _ in compose(image=image)["applied_transforms"]}
            same += ("HorizontalFlip" in names) == ("VerticalFlip" in names)
        return same

    steps = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    assert agreement(A.Compose(steps, seed=3, save_applied_params=True)) == 200  # the upstream behaviour
    shared = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], save_applied_params=True)
    reseed(shared, 3)
    assert 60 < agreement(shared) < 140


def test_stage_timer_counts_each_image(tmp_path):
    rows = _rows(tmp_path, count=3)
    timer = StageTimer()
    make_transform(build_augmentation(False, [64], 96, 64), stage_timer=timer)(rows)
    assert timer.images == 3 and set(timer.seconds) == {"decode", "augment", "labels"}
    assert all(seconds > 0 for seconds in timer.seconds.values())


def test_square_resize_train_sides_and_boxes():
    augmentation = build_augmentation(True, [64, 96], 0, 64, hflip_prob=0.0, color_jitter_prob=0.0, seed=3,
                                      resize="square")
    image = np.zeros((100, 200, 3), np.uint8)
    sides = set()
    for _ in range(20):
        out = augmentation(image=image, bboxes=np.array([[10.0, 20.0, 30.0, 40.0]]), category=[1], iscrowd=[0])
        side = out["image"].shape[0]
        assert out["image"].shape == (side, side, 3)
        sides.add(side)
        # x scaled by side/200, y by side/100
        np.testing.assert_allclose(out["bboxes"][0], [10 * side / 200, 20 * side / 100, 30 * side / 200,
                                                      40 * side / 100], rtol=1e-5)
    assert sides == {64, 96}


def test_eval_augmentation_for_each_processor_size():
    from recipe.pipeline.augment import eval_augmentation_for

    image, box = np.zeros((100, 200, 3), np.uint8), np.array([[10.0, 20.0, 30.0, 40.0]])
    square = eval_augmentation_for({"height": 64, "width": 64})(image=image, bboxes=box, category=[1], iscrowd=[0])
    assert square["image"].shape == (64, 64, 3)
    np.testing.assert_allclose(square["bboxes"][0], [3.2, 12.8, 9.6, 25.6], rtol=1e-5)
    fixed = eval_augmentation_for({"height": 50, "width": 80})(image=image, bboxes=box, category=[1], iscrowd=[0])
    assert fixed["image"].shape == (50, 80, 3)
    short = eval_augmentation_for({"shortest_edge": 50, "longest_edge": 90})(image=image, bboxes=box, category=[1],
                                                                            iscrowd=[0])
    assert short["image"].shape == (45, 90, 3)  # 50 x 100 capped by the longest edge
    with pytest.raises(ValueError, match="resize must be one of"):
        build_augmentation(False, [64], 96, 64, resize="squash")


def test_image_of_another_size_than_annotated_is_resized_once_with_a_warning(tmp_path):
    """Both readers (channel-last for the loader's cv2 path, channel-first for training's batch path) bring a
    file whose size differs from its annotation to the annotated size, with the same pixels, decoding it once."""
    from unittest import mock

    import recipe.pipeline.transforms as T

    path = str(tmp_path / "a.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    T._warned_sizes.clear()
    with pytest.warns(UserWarning, match="image is 40x30 but the annotation file says 50x20"):
        hwc = T._read_at_annotated_size(path, 20, 50)
    with mock.patch.object(T, "read_image", side_effect=AssertionError("decoded twice")):
        chw = T._read_chw_at_annotated_size(path, 20, 50)
    assert hwc.shape == (20, 50, 3) and chw.shape == (3, 20, 50)
    assert np.array_equal(chw.permute(1, 2, 0).numpy(), hwc)
