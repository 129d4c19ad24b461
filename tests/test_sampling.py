"""Repeat-factor sampling (recipe/pipeline/sampling.py): factors, per-image repeat counts and their split over
processes, computed by hand on a 10-image set."""

import json
import math

import numpy as np
import pytest
from torch.utils.data import BatchSampler

from conftest import DEMO, ROOT, torchrun, write_json
from recipe.pipeline.sampling import (
    RepeatFactorSampler,
    class_frequencies,
    class_repeat_factors,
    epoch_length,
    image_repeat_factors,
    repeat_counts,
    spread_copies,
)

# Ten images, three classes: class 0 in images 0-7 (f 0.8), class 1 in image 3 only (0.1), class 2 in image 8 only
# (0.1); image 9 has no box.
TEN = [[0], [0], [0, 0], [0, 1], [0], [0], [0], [0], [2], []]


class Epoch:
    def __init__(self, epoch=0):
        self.epoch = epoch


def test_factors_of_the_ten_images_by_hand():
    assert class_frequencies(TEN, 3) == [0.8, 0.1, 0.1]
    # t 0.4: r_0 = max(1, sqrt(0.4 / 0.8)) = 1, r_1 = r_2 = sqrt(0.4 / 0.1) = 2.
    assert class_repeat_factors([0.8, 0.1, 0.1], 0.4) == [1.0, 2.0, 2.0]
    factors = image_repeat_factors(TEN, [1.0, 2.0, 2.0])
    assert factors == [1, 1, 1, 2, 1, 1, 1, 1, 2, 1]
    assert epoch_length(factors) == 12
    # t 0.9: r_0 = sqrt(0.9 / 0.8) = 1.0607, r_1 = r_2 = 3; a class in no image repeats nothing.
    assert class_repeat_factors([0.8, 0.1, 0.1, 0.0], 0.9) == pytest.approx([math.sqrt(1.125), 3.0, 3.0, 1.0])


@pytest.mark.parametrize("epoch", range(5))
def test_whole_factors_give_exact_counts_every_epoch(epoch):
    sampler = RepeatFactorSampler([1, 1, 1, 2, 1, 1, 1, 1, 2, 1], seed=0, epoch_of=Epoch(epoch), step_images=4)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 12
    assert np.bincount(indices, minlength=10).tolist() == [1, 1, 1, 2, 1, 1, 1, 1, 2, 1]


def test_fractional_parts_drawn_with_their_probability_and_a_fixed_length():
    # t 0.225: r_1 = r_2 = sqrt(2.25) = 1.5; the fractional parts sum to 1: exactly one of images 3 and 8 comes twice.
    factors = image_repeat_factors(TEN, class_repeat_factors(class_frequencies(TEN, 3), 0.225))
    assert factors == [1, 1, 1, 1.5, 1, 1, 1, 1, 1.5, 1]
    twice = np.zeros(10)
    for epoch in range(400):
        counts = repeat_counts(factors, np.random.default_rng(epoch))
        assert counts.sum() == epoch_length(factors) == 11
        assert counts[3] + counts[8] == 3 and counts.min() == 1
        twice += counts - 1
    assert twice[3] / 400 == pytest.approx(0.5, abs=0.08)


def test_a_fractional_sum_that_is_not_whole_keeps_the_epoch_length():
    factors = [1.3, 1.3, 1.3, 1.0, 2.6]  # fractions sum to 1.5: floor 1 extra copy each epoch
    means = np.zeros(5)
    for epoch in range(600):
        counts = repeat_counts(factors, np.random.default_rng(epoch))
        assert counts.sum() == epoch_length(factors) == 7
        assert all(math.floor(f) <= c <= math.ceil(f) for f, c in zip(factors, counts))
        means += counts / 600
    # Each picked with probability frac, then one of ceil(S) = 2 picks dropped half the time: frac x 0.75 here.
    assert means[4] == pytest.approx(2 + 0.6 * 0.75, abs=0.08)
    assert means[3] == pytest.approx(1.0)


def test_the_list_is_a_function_of_seed_and_epoch():
    factors = [1, 1, 1, 1.5, 1, 1, 1, 1, 2.5, 1]
    first = RepeatFactorSampler(factors, seed=3, epoch_of=Epoch(2), step_images=2)
    again = RepeatFactorSampler(factors, seed=3, epoch_of=Epoch(2), step_images=2)
    assert list(first) == list(again)  # a resumed run, another process
    assert first.indices(2) != first.indices(3) or first.indices(2) != first.indices(4)
    assert RepeatFactorSampler(factors, seed=4, epoch_of=Epoch(2), step_images=2).indices(2) != first.indices(2)


def test_spread_copies_moves_a_duplicate_out_of_its_step():
    assert spread_copies([5, 5, 1, 2, 3, 4], 2) == [5, 1, 5, 2, 3, 4]
    assert spread_copies([1, 2, 2, 3, 3, 4], 3) == [1, 2, 3, 2, 3, 4]
    assert spread_copies([1, 2, 3, 4, 5, 5], 2) == [5, 2, 3, 4, 5, 1]  # the last step: swapped with an earlier one
    assert spread_copies([7, 7, 7], 2) == [7, 7, 7]  # nowhere to go: kept


def test_two_processes_split_the_copies_and_no_step_holds_an_image_twice():
    from accelerate.data_loader import BatchSamplerShard

    factors = [1, 1, 1, 2, 1, 1, 1, 1, 2, 1]
    for epoch in range(20):
        # batch 2 per process, 2 processes: 4 images per optimizer step
        sampler = RepeatFactorSampler(factors, seed=0, epoch_of=Epoch(epoch), step_images=4)
        ranks = [list(BatchSamplerShard(BatchSampler(sampler, 2, False), num_processes=2, process_index=p))
                 for p in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == 3
        seen = [i for rank in ranks for batch in rank for i in batch]
        assert np.bincount(seen, minlength=10).tolist() == factors  # every copy on exactly one process
        for step in range(3):
            images = ranks[0][step] + ranks[1][step]
            assert len(set(images)) == 4, (epoch, step, images)


def test_demo_classes_of_the_generator_are_the_flag_choices():
    import dataclasses

    from recipe.config.command_arguments import DemoDataArguments
    from recipe.data.synthetic import CATEGORIES

    field = {f.name: f for f in dataclasses.fields(DemoDataArguments)}["rare_class"]
    assert field.metadata["choices"] == CATEGORIES


def ten_image_set(demo_dir, out):
    """The first 10 demo training images with TEN's labels (class ids 1-3 = labels 0-2): image 10 without a box."""
    coco = json.loads((demo_dir / "train" / "annotations.json").read_text())
    images = sorted(coco["images"], key=lambda i: i["id"])[:10]
    annotations = []
    for image, labels in zip(images, TEN):
        for label in labels:
            w, h = image["width"], image["height"]
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": label + 1,
                                "bbox": [10, 10, w // 3, h // 3], "area": (w // 3) * (h // 3), "iscrowd": 0})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(["common", "rare one", "rare two"])]
    return write_json(out, {"images": images, "annotations": annotations, "categories": categories}), images


RECORD_STEPS = """
import json, sys
sys.path.insert(0, {root!r})
import recipe
from recipe.engine.trainer import DetectionTrainer
seen = []
compute_loss = DetectionTrainer.compute_loss
def recording(self, model, inputs, *args, **kwargs):
    seen.append([int(t["image_id"]) for t in inputs["labels"]])
    return compute_loss(self, model, inputs, *args, **kwargs)
DetectionTrainer.compute_loss = recording
config = recipe.parse_config(sys.argv[1:])
recipe.train(config)
with open(f"{{config.training.output_dir}}/seen-{{config.training.process_index}}.json", "w") as f:
    json.dump(seen, f)
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_processes_train_on_each_copy_once_and_never_twice_in_a_step(demo_dir, tmp_path):
    """torchrun, 2 processes x batch 2 on the 10-image set, threshold 0.4 (images 4 and 9 twice: 12 per epoch, 3
    steps): over 2 epochs every copy is trained on by exactly one process, and no step holds an image twice."""
    ann, images = ten_image_set(demo_dir, tmp_path / "ten.json")
    script = tmp_path / "record.py"
    script.write_text(RECORD_STEPS.format(root=str(ROOT)))
    out = tmp_path / "out"
    proc = torchrun(str(script), DEMO, "--train-img", f"{demo_dir}/train/images", "--train-ann", str(ann),
                    "--val_img", "", "--val_ann", "", "--demo_data", "none", "--output_dir", str(out),
                    "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
                    "--shortest_edges", "64", "--eval_size", "64", "--longest_edge", "96",
                    "--per_device_train_batch_size", "2", "--max_steps", "6", "--save_strategy", "no",
                    "--repeat_factor_threshold", "0.4", "--seed", "3", "--report_to", "none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"seen-{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(r) for r in ranks] == [6, 6]
    twice = {images[3]["id"], images[8]["id"]}
    for epoch in (0, 1):
        steps = range(3 * epoch, 3 * epoch + 3)
        seen = [i for rank in ranks for s in steps for i in rank[s]]
        assert sorted(seen) == sorted([image["id"] for image in images] + sorted(twice))
        for s in steps:
            assert len(set(ranks[0][s] + ranks[1][s])) == 4, (epoch, s, ranks[0][s], ranks[1][s])
    report = json.loads((out / "data_report.json").read_text())["repeat_factor_sampling"]
    assert report["images_per_epoch"] == 12
    assert {n: (c["images"], c["repeat_factor"]) for n, c in report["classes"].items()} == {
        "common": (8, 1.0), "rare one": (1, 2.0), "rare two": (1, 2.0)}
