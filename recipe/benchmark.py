"""Dataloader benchmark: images/s of decode + augment + process + collate, and the time of each stage."""

from __future__ import annotations

import time

import numpy as np
import torch

from .collate import DetectionCollator
from .data.builder import load_detection_dataset
from .modeling import load_model_and_processor
from .transforms import build_augmentation, load_rgb, make_labels


class _TimedTransform:
    """The training transform, split into stages and timed (per worker; summed in the main process)."""

    def __init__(self, processor, augmentation):
        self.processor, self.augmentation = processor, augmentation

    def __call__(self, batch):
        times = np.zeros(3)
        pixel_values, labels = [], []
        for image_id, path, height, width, objects in zip(batch["image_id"], batch["image_path"], batch["height"],
                                                          batch["width"], batch["objects"]):
            t0 = time.perf_counter()
            image = load_rgb(path)
            t1 = time.perf_counter()
            out = self.augmentation(image=image, bboxes=np.asarray(objects["bbox"], np.float64).reshape(-1, 4),
                                    category=list(objects["category"]), iscrowd=list(objects["iscrowd"]))
            t2 = time.perf_counter()
            pixel_values.append(self.processor(images=out["image"], do_resize=False, do_pad=False,
                                               return_tensors="pt")["pixel_values"][0])
            labels.append(make_labels(out["bboxes"], out["category"], out["iscrowd"], image_id, (height, width),
                                      out["image"].shape[:2]))
            times += [t1 - t0, t2 - t1, time.perf_counter() - t2]
        return {"pixel_values": pixel_values, "labels": labels,
                "stage_times": [torch.tensor(times)] * len(pixel_values)}


class _TimedCollator(DetectionCollator):
    def __call__(self, features):
        t0 = time.perf_counter()
        stage = features[0]["stage_times"] if features else torch.zeros(3)
        batch = super().__call__(features)
        batch["stage_times"] = torch.cat([stage, torch.tensor([time.perf_counter() - t0])])
        return batch


def benchmark_dataloader(data_args, model_args, train_args, num_batches: int = 50) -> dict:
    """Iterate the training dataloader as configured; return images/s and seconds per image of each stage."""
    data = load_detection_dataset(data_args.train_ann, data_args.train_img, data_args.annotation_format,
                                  data_args.dataset_cache_dir, data_args.subset, data_args.box_convention,
                                      data_args.bdd_image_size)
    _, processor = load_model_and_processor(model_args, {i: c["name"] for i, c in enumerate(data.categories)})
    aug = build_augmentation(True, data_args.shortest_edges, data_args.longest_edge, data_args.eval_size,
                             data_args.hflip_prob, data_args.crop_prob, data_args.color_jitter_prob)
    dataset = data.dataset.with_transform(_TimedTransform(processor, aug))
    loader = torch.utils.data.DataLoader(dataset, batch_size=train_args.per_device_train_batch_size, shuffle=True,
                                         num_workers=train_args.dataloader_num_workers,
                                         collate_fn=_TimedCollator(processor))
    stages, images, batches = torch.zeros(4), 0, 0
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    while batches < num_batches:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        stages += batch["stage_times"]
        images += batch["pixel_values"].shape[0]
        batches += 1
    elapsed = time.perf_counter() - start
    per_image = {name: float(stages[i]) / images * 1000 for i, name in
                 enumerate(("decode_ms", "augment_ms", "process_ms"))}
    per_image["collate_ms"] = float(stages[3]) / images * 1000
    return {"images_per_s": images / elapsed, "images": images, "batches": batches,
            "num_workers": train_args.dataloader_num_workers, **per_image}
