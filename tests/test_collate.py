"""DetectionCollator and the uint8 transform: same tensors as the image processor's own per-image path."""

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from recipe.pipeline.augment import build_augmentation
from recipe.pipeline.collate import DetectionCollator
from recipe.pipeline.transforms import make_labels, make_transform

PROCESSORS = [
    ("DeformableDetrImageProcessor", {}),
    ("DeformableDetrImageProcessorPil", {}),  # numpy backend: float32 rounding differs by < 1e-5
    ("DetrImageProcessor", {}),
    ("ConditionalDetrImageProcessor", {}),
    ("YolosImageProcessor", {}),
    ("RTDetrImageProcessor", {}),  # rescale only, no mean/std
    ("RfDetrImageProcessor", {}),
    ("DeformableDetrImageProcessor", {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3],
                                      "rescale_factor": 1 / 127.5}),
    ("DeformableDetrImageProcessor", {"do_rescale": False}),  # normalise in 0..255 units
    ("DeformableDetrImageProcessor", {"do_rescale": False, "do_normalize": False}),
]


def test_pads_bottom_right_and_masks_real_pixels():
    collate = DetectionCollator(transformers.DeformableDetrImageProcessor())
    a = {"pixel_values": torch.ones(3, 2, 3), "labels": {"class_labels": torch.tensor([1])}}
    b = {"pixel_values": torch.full((3, 3, 1), 2.0), "labels": {"class_labels": torch.tensor([], dtype=torch.long)}}
    batch = collate([a, b])  # float inputs: already processed, padded as they are
    assert batch["pixel_values"].shape == (2, 3, 3, 3)
    assert batch["pixel_mask"].dtype == torch.int64
    assert batch["pixel_mask"].tolist() == [[[1, 1, 1], [1, 1, 1], [0, 0, 0]],
                                            [[1, 0, 0], [1, 0, 0], [1, 0, 0]]]
    assert batch["pixel_values"][0, 0].tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0]]
    assert batch["pixel_values"][1, 2].tolist() == [[2, 0, 0], [2, 0, 0], [2, 0, 0]]
    assert batch["labels"][0] is a["labels"] and batch["labels"][1] is b["labels"]


def test_uint8_normalised_by_hand():
    collate = DetectionCollator(transformers.DeformableDetrImageProcessor())
    image = torch.tensor([0, 255], dtype=torch.uint8).reshape(1, 1, 2).expand(3, 1, 2)
    batch = collate([{"pixel_values": image, "labels": {}}, {"pixel_values": image[:, :, :1], "labels": {}}])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet
    expected = np.stack([-mean / std, (1 - mean) / std], axis=1)[:, None, :]
    np.testing.assert_allclose(batch["pixel_values"][0].numpy(), expected, atol=1e-5)
    assert batch["pixel_values"][1, :, 0, 1].tolist() == [0, 0, 0]  # padding is 0 after normalisation
    assert batch["pixel_mask"].tolist() == [[[1, 1]], [[1, 0]]]


def _rows(tmp_path, count=4):
    """Table rows (the builder's columns) over real JPEG files of different sizes with a few boxes."""
    rng = np.random.default_rng(0)
    rows = {"image_id": [], "image_path": [], "height": [], "width": [], "objects": []}
    for i, (h, w) in enumerate([(120, 160), (150, 100), (96, 128), (130, 170)][:count]):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        boxes = [[5, 6, 40, 30], [w - 50, h - 40, 45, 35], [10, h / 2, w / 3, h / 4]]
        rows["image_id"].append(i + 1)
        rows["image_path"].append(str(path))
        rows["height"].append(h)
        rows["width"].append(w)
        rows["objects"].append({"bbox": boxes, "category": [0, 2, 1], "iscrowd": [0, 0, i % 2]})
    return rows


def _old_pipeline(rows, processor, augmentation):
    """The recipe's previous path, rebuilt from the processor: PIL decode, augment, the processor per image
    in float (no resize, no pad), then `processor.pad` image by image to the batch's size."""
    images, labels = [], []
    for image_id, path, h, w, objects in zip(rows["image_id"], rows["image_path"], rows["height"], rows["width"],
                                              rows["objects"]):
        with Image.open(path) as im:
            image = np.array(im.convert("RGB"))
        out = augmentation(image=image, bboxes=np.asarray(objects["bbox"], np.float64).reshape(-1, 4),
                           category=list(objects["category"]), iscrowd=list(objects["iscrowd"]))
        pixels = processor(images=out["image"], do_resize=False, do_pad=False, return_tensors="pt")
        images.append(torch.as_tensor(np.asarray(pixels["pixel_values"][0])))
        labels.append(make_labels(out["bboxes"], out["category"], out["iscrowd"], image_id, (h, w),
                                  out["image"].shape[:2]))
    height, width = max(i.shape[-2] for i in images), max(i.shape[-1] for i in images)
    padded = torch.zeros(len(images), 3, height, width)
    mask = torch.zeros(len(images), height, width, dtype=torch.int64)
    for i, image in enumerate(images):
        padded[i, :, :image.shape[-2], :image.shape[-1]] = image
        mask[i, :image.shape[-2], :image.shape[-1]] = 1
    return padded, mask, labels


@pytest.mark.parametrize("name,kwargs", PROCESSORS)  # noqa: PT006
def test_new_pipeline_equals_processor_path(tmp_path, name, kwargs):
    processor = getattr(transformers, name)(**kwargs)
    rows = _rows(tmp_path)
    # no colour jitter here: it is applied to the batch (tests/test_color.py compares it with the old one)
    aug_args = dict(shortest_edges=[64, 96, 112], longest_edge=160, eval_size=96, crop_prob=0.5, color_jitter_prob=0)
    old_pixels, old_mask, old_labels = _old_pipeline(rows, processor, build_augmentation(True, **aug_args, seed=7))
    transform = make_transform(build_augmentation(True, **aug_args, seed=7))
    out = transform(rows)
    assert all(p.dtype == torch.uint8 and p.shape[0] == 3 for p in out["pixel_values"])
    batch = DetectionCollator(processor)([{"pixel_values": p, "labels": lab}
                                          for p, lab in zip(out["pixel_values"], out["labels"])])
    assert batch["pixel_values"].dtype == torch.float32
    assert batch["pixel_values"].shape == old_pixels.shape
    assert torch.equal(batch["pixel_mask"], old_mask)
    assert (batch["pixel_values"] - old_pixels).abs().max().item() <= 1e-5
    for new, old in zip(batch["labels"], old_labels):
        assert new.keys() == old.keys()
        for key in old:
            assert torch.equal(new[key], old[key]), key


def test_torchvision_backend_values_are_bitwise_equal(tmp_path):
    """Same float32 operations as the processor's torchvision backend: not only close, equal."""
    processor = transformers.DeformableDetrImageProcessor()
    rows = _rows(tmp_path, count=2)
    old_pixels, _, _ = _old_pipeline(rows, processor, build_augmentation(False, [96], 160, 96))
    out = make_transform(build_augmentation(False, [96], 160, 96))(rows)
    batch = DetectionCollator(processor)([{"pixel_values": p, "labels": {}} for p in out["pixel_values"]])
    assert torch.equal(batch["pixel_values"], old_pixels)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_pads_to_the_multiple_with_zeros_and_masks_only_real_pixels(dtype):
    # The batch is allocated uninitialised: every padded element must be written.
    collate = DetectionCollator(transformers.DeformableDetrImageProcessor(), pad_to_multiple_of=4)
    for _ in range(3):
        images = [torch.full((3, 5, 6), 200).to(dtype), torch.full((3, 3, 2), 7).to(dtype).permute(0, 2, 1)]
        batch = collate([{"pixel_values": image, "labels": {}} for image in images])
        assert batch["pixel_values"].shape == (2, 3, 8, 8) and batch["pixel_mask"].shape == (2, 8, 8)
        for i, (h, w) in enumerate([(5, 6), (2, 3)]):
            expected_mask = torch.zeros(8, 8, dtype=torch.int64)
            expected_mask[:h, :w] = 1
            assert torch.equal(batch["pixel_mask"][i], expected_mask)
            assert not batch["pixel_values"][i][:, expected_mask == 0].any()
            assert batch["pixel_values"][i][:, expected_mask == 1].ne(0).all()


@pytest.mark.parametrize(("name", "overrides"), PROCESSORS)
def test_normalised_on_device_equals_the_collator_bit_for_bit(name, overrides):
    """The training batch leaves the loader uint8 (uint8 mask); `normalise_batch`, where the model runs, gives
    the CPU collator's float32 values exactly, zero padding and the int64 mask."""
    from recipe.pipeline.device_batch import normalise_batch

    processor = getattr(transformers, name)(**overrides)
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in ((20, 30), (24, 18))]
    features = [{"pixel_values": image, "labels": {}} for image in images]
    on_cpu = DetectionCollator(processor, pad_to_multiple_of=8)(features)
    shipped = DetectionCollator(processor, pad_to_multiple_of=8, normalise_on_device=True)(features)
    assert shipped["pixel_values"].dtype == torch.uint8 and shipped["pixel_mask"].dtype == torch.uint8
    assert shipped["pixel_values"].shape == on_cpu["pixel_values"].shape == (2, 3, 24, 32)
    normalised = normalise_batch(shipped, processor)
    assert normalised["pixel_values"].dtype == torch.float32 and normalised["pixel_mask"].dtype == torch.int64
    assert torch.equal(normalised["pixel_values"], on_cpu["pixel_values"])
    assert torch.equal(normalised["pixel_mask"], on_cpu["pixel_mask"])
    assert normalise_batch(on_cpu, processor) is on_cpu  # a float batch passes as it is
    # the torch path (a GPU's), run here on the CPU
    from recipe.pipeline.device_batch import normalise_with_torch, processor_normalisation

    on_torch = normalise_with_torch(shipped["pixel_values"], shipped["pixel_mask"],
                                     *processor_normalisation(processor))
    assert torch.equal(on_torch, on_cpu["pixel_values"])


@pytest.mark.parametrize(("name", "overrides"), PROCESSORS[:1] + PROCESSORS[5:6])
def test_jittered_images_normalised_alike_on_every_path(name, overrides):
    """A batch with colour jitter (image 0 jittered, image 1 not): the CPU collator, `normalise_batch`'s numpy
    path and its torch path (a GPU's) give the same values; the jittered image is the processor's
    normalisation of `color_jitter` applied to it alone, the other is untouched, padding stays 0 and the
    factors do not reach the model."""
    from recipe.pipeline.color_jitter import color_jitter
    from recipe.pipeline.device_batch import normalise_batch, normalise_with_torch, processor_normalisation

    processor = getattr(transformers, name)(**overrides)
    generator = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in ((20, 30), (24, 18))]
    factors = torch.tensor([1.1, 0.85, 1.2, 0.015, 3, 1, 0, 2])
    features = [{"pixel_values": images[0], "labels": {}, "color_jitter": factors},
                {"pixel_values": images[1], "labels": {}, "color_jitter": None}]
    on_cpu = DetectionCollator(processor)(features)
    assert "color_jitter" not in on_cpu
    plain = DetectionCollator(processor)([{"pixel_values": image, "labels": {}} for image in images])
    assert torch.equal(on_cpu["pixel_values"][1], plain["pixel_values"][1])
    assert not torch.equal(on_cpu["pixel_values"][0], plain["pixel_values"][0])
    jittered = color_jitter(images[0][None].float() / 255.0, factors[None])[0] * 255.0
    alone = DetectionCollator(processor)([{"pixel_values": jittered, "labels": {}}])["pixel_values"][0]
    mean, std, factor = processor_normalisation(processor)
    expected = ((jittered - torch.from_numpy(mean)[:, None, None]) / torch.from_numpy(std)[:, None, None]
                if mean is not None else jittered * factor)
    torch.testing.assert_close(on_cpu["pixel_values"][0, :, :20, :30], expected, rtol=0, atol=1e-5)
    assert alone.shape == (3, 20, 30)
    assert not on_cpu["pixel_values"][0, :, 20:, :].any() and not on_cpu["pixel_values"][0, :, :, 30:].any()

    shipped = DetectionCollator(processor, normalise_on_device=True)(features)
    assert shipped["color_jitter"].shape == (2, 8) and torch.isnan(shipped["color_jitter"][1]).all()
    normalised = normalise_batch(shipped, processor)
    assert "color_jitter" not in normalised
    assert torch.equal(normalised["pixel_values"], on_cpu["pixel_values"])
    on_torch = normalise_with_torch(shipped["pixel_values"], shipped["pixel_mask"],
                                     *processor_normalisation(processor), shipped["color_jitter"])
    torch.testing.assert_close(on_torch, on_cpu["pixel_values"], rtol=0, atol=1e-4)
    assert torch.equal(on_torch[1], on_cpu["pixel_values"][1])


def test_packed_labels_are_equal_views_of_one_storage_per_field():
    from recipe.pipeline.worker_transport import pack_labels

    labels = [{"boxes": torch.rand(n, 4), "class_labels": torch.arange(n), "image_id": torch.tensor([i]),
               "size": torch.tensor([10, 20]), "note": "kept"} for i, n in enumerate((3, 0, 2))]
    packed = pack_labels(labels)
    for old, new in zip(labels, packed):
        assert old.keys() == new.keys() and new["note"] == "kept"
        for key in ("boxes", "class_labels", "image_id", "size"):
            assert torch.equal(old[key], new[key]) and new[key].dtype == old[key].dtype
            assert new[key].untyped_storage().data_ptr() == packed[0][key].untyped_storage().data_ptr()
            assert new[key].is_shared()
    assert pack_labels([]) == []


def test_a_worker_sends_the_same_batch_as_the_main_process(tmp_path):
    """Through a DataLoader worker (shared-memory batch, packed labels) the batch equals the in-process one."""
    processor = transformers.DeformableDetrImageProcessor()
    rows = _rows(tmp_path)
    transform = make_transform(build_augmentation(False, [96], 160, 96))
    out = transform(rows)
    features = [{"pixel_values": p, "labels": lab} for p, lab in zip(out["pixel_values"], out["labels"])]
    collator = DetectionCollator(processor, normalise_on_device=True)
    expected = collator(features)
    [shipped] = list(torch.utils.data.DataLoader(features, batch_size=len(features), num_workers=1,
                                                 collate_fn=collator))
    assert torch.equal(shipped["pixel_values"], expected["pixel_values"])
    assert torch.equal(shipped["pixel_mask"], expected["pixel_mask"])
    for new, old in zip(shipped["labels"], expected["labels"]):
        assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in old)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and values (NaN equal to NaN: the jitter rows of images without jitter)."""
    equal = (a == b) | (a.isnan() & b.isnan()) if a.is_floating_point() else a == b
    return a.dtype == b.dtype and a.shape == b.shape and bool(equal.all())


def _batch_equal(new: dict, old: dict) -> bool:
    return new.keys() == old.keys() and all(
        _same(new[k], old[k]) if k != "labels" else
        all(a.keys() == b.keys() and all(_same(a[f], b[f]) for f in b) for a, b in zip(new[k], old[k]))
        for k in old)


def _storage_key(tensor: torch.Tensor):
    """The shared-memory segment (inode, device) a tensor received from a worker lies on."""
    from torch.multiprocessing.reductions import shared_cache

    cdata = tensor.untyped_storage()._cdata
    [key] = [k for k, ref in shared_cache.items() if ref.cdata == cdata]
    return key


@pytest.mark.parametrize(("training", "on_device"), [(False, True), (True, True), (False, False)])
def test_worker_buffers_are_reused_but_never_while_the_main_process_holds_them(tmp_path, training, on_device):
    """A worker writes each batch into one of its reused shared buffers (`_SharedSlots`, 4 per worker), leased
    until the main process frees every tensor on it. Batches dropped as they come reuse the buffers; batches
    held (every third here, or all of them: list(loader)) are never overwritten: each batch equals the one
    collated in this process, whatever is held. Training batches (uint8, `geometry`, jitter rows), evaluation
    batches (uint8 and mask) and batches normalised in the worker (float32) alike."""
    from recipe.pipeline.transforms import AugmentationSeeds

    processor = transformers.DeformableDetrImageProcessor()
    rows = _rows(tmp_path)
    augmentation = build_augmentation(training, [64, 96], 160, 96, color_jitter_prob=0.5)
    transform = make_transform(augmentation, seeds=AugmentationSeeds(3), batch_geometry=training)
    out = transform({k: v * 6 for k, v in rows.items()})  # 24 images: 12 batches of 2
    features = [dict(zip(out, row)) for row in zip(*out.values())]
    assert training == ("geometry" in features[0])
    collator = DetectionCollator(processor, normalise_on_device=on_device)
    expected = [collator(features[i:i + 2]) for i in range(0, len(features), 2)]
    assert all(b["pixel_values"].dtype == (torch.uint8 if on_device else torch.float32) for b in expected)
    assert training == any("color_jitter" in b for b in expected)

    def loader():
        return torch.utils.data.DataLoader(features, batch_size=2, num_workers=1, collate_fn=collator)

    held, keys = [], []
    for n, batch in enumerate(loader()):
        assert type(batch) is dict and _batch_equal(batch, expected[n])
        keys.append(_storage_key(batch["pixel_values"]))
        if n % 3 == 0:
            held.append((n, batch))
        del batch
    assert len(set(keys)) < len(keys)  # reused
    assert all(_batch_equal(batch, expected[n]) for n, batch in held)
    every = list(loader())  # all held: the buffers run out, the rest get fresh segments
    assert len({_storage_key(b["pixel_values"]) for b in every}) == len(every)
    assert all(_batch_equal(batch, old) for batch, old in zip(every, expected))


def test_shared_slots_lend_free_buffers_grow_them_and_give_none_when_all_are_leased():
    from recipe.pipeline.worker_transport import _SharedSlots

    slots = _SharedSlots(size=2)
    first, lease_a = slots.take(100)
    second, lease_b = slots.take(100)
    assert first is second and lease_a.index == lease_b.index == 0  # not leased until a batch is sent
    assert lease_a.lease({"x": 1}) == {"x": 1} and slots.flags.tolist() == [1, 0]
    other, lease_c = slots.take(50)  # buffer 0 is leased
    assert lease_c.index == 1 and other.nbytes() == 100 and other.is_shared()  # the largest so far
    lease_c.lease({})
    assert slots.take(10) is None  # all leased: the caller makes a fresh segment
    slots.flags[0] = 0  # the main process let go of buffer 0
    grown, lease_d = slots.take(200)
    assert lease_d.index == 0 and grown.nbytes() == 200 and grown is not first
    lease_d.lease({})
    slots.flags[1] = 0
    again, lease_e = slots.take(150)  # buffer 1 (100 bytes) is too small: made as large as the largest
    assert lease_e.index == 1 and again.nbytes() == 200


@pytest.mark.parametrize("boxes_on_canvas", [False, True])
def test_batch_geometry_equals_the_loader_path(tmp_path, boxes_on_canvas):
    """Training defers flip and resize to the batch (`batch_geometry`): same labels, mask and sizes as the
    loader doing them with cv2; pixels differ only by cv2's 8-bit rounding (float here, by design): < 1 level
    of 255 everywhere, 0.25 on average; the CPU collator applies the geometry too."""
    from recipe.pipeline.device_batch import normalise_batch
    from recipe.pipeline.transforms import AugmentationSeeds

    processor = transformers.DeformableDetrImageProcessor()
    rows = _rows(tmp_path)
    aug_args = dict(shortest_edges=[64, 96, 112], longest_edge=160, eval_size=96, color_jitter_prob=0.0)
    collate = DetectionCollator(processor, pad_to_multiple_of=8, boxes_on_canvas=boxes_on_canvas,
                                normalise_on_device=True)
    batches = []
    for deferred in (False, True):
        transform = make_transform(build_augmentation(True, **aug_args), seeds=AugmentationSeeds(5),
                                   batch_geometry=deferred)
        out = transform(rows)
        assert ("geometry" in out) == deferred
        features = [dict(zip(out, row)) for row in zip(*out.values())]
        shipped = collate(features)
        assert shipped["pixel_values"].dtype == torch.uint8
        batches.append((normalise_batch(shipped, processor), features))
    (loader, _), (deferred, features) = batches
    assert "geometry" not in deferred and deferred["pixel_values"].shape == loader["pixel_values"].shape
    assert torch.equal(deferred["pixel_mask"], loader["pixel_mask"])
    for new, old in zip(deferred["labels"], loader["labels"]):
        assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in old)
    flips = [int(f["geometry"][0]) for f in features]
    resized = [tuple(f["geometry"][1:3].tolist()) != tuple(f["geometry"][3:].tolist()) for f in features]
    assert 0 < sum(flips) < len(flips) and any(resized)
    levels = (deferred["pixel_values"] - loader["pixel_values"]).abs() * torch.tensor(
        processor.image_std)[:, None, None] * 255
    assert levels.max().item() < 1.0 and levels.mean().item() < 0.25
    on_cpu = DetectionCollator(processor, pad_to_multiple_of=8, boxes_on_canvas=boxes_on_canvas)(features)
    assert "geometry" not in on_cpu and torch.equal(on_cpu["pixel_values"], deferred["pixel_values"])


def test_the_cpu_training_path_draws_the_same_jitter_and_boxes_as_the_batch_path(tmp_path):
    """Training on the CPU flips and resizes in the loader (cv2, `batch_geometry=False`, train.build_datasets);
    with a device, on the batch. For the same seed: the same flips, sizes, jitter factors and boxes; the pixels
    differ by cv2's 8-bit rounding before the jitter: under 2.5 levels of 255 everywhere, 0.25 on average."""
    from recipe.pipeline.device_batch import normalise_batch
    from recipe.pipeline.transforms import AugmentationSeeds

    processor = transformers.DeformableDetrImageProcessor()
    rows = {k: v * 2 for k, v in _rows(tmp_path).items()}
    aug_args = dict(shortest_edges=[64, 96, 112], longest_edge=160, eval_size=96, color_jitter_prob=0.5)
    collate = DetectionCollator(processor, normalise_on_device=True)
    shipped, normalised = [], []
    for deferred in (False, True):
        transform = make_transform(build_augmentation(True, **aug_args), seeds=AugmentationSeeds(9),
                                   batch_geometry=deferred)
        shipped.append(collate([dict(zip(out, row)) for out in [transform(rows)] for row in zip(*out.values())]))
        normalised.append(normalise_batch(shipped[-1], processor))
    (loader, batch), (loader_jitter, batch_jitter) = normalised, (s["color_jitter"] for s in shipped)
    assert _same(loader_jitter, batch_jitter) and 0 < int(torch.isnan(batch_jitter[:, 0]).sum()) < len(batch_jitter)
    assert torch.equal(loader["pixel_mask"], batch["pixel_mask"])
    for new, old in zip(batch["labels"], loader["labels"]):
        assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in old)
    levels = (batch["pixel_values"] - loader["pixel_values"]).abs() * torch.tensor(
        processor.image_std)[:, None, None] * 255
    assert levels.max().item() < 2.5 and levels.mean().item() < 0.25  # 1.79 and 0.10 here
