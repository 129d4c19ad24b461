"""Dataloader benchmark: images/s of decode + augment + process + collate, and the time of each stage."""

from __future__ import annotations

import time

import numpy as np
import torch

from .collate import DetectionCollator
from .data.builder import load_detection_dataset
from .data.images import read_image
from .modeling import load_model_and_processor
from .transforms import build_augmentation, make_labels


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
            image = read_image(path)
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


def eval_memory_run(mode: str, ann: str, images: str, num_images: int, cache_dir: str) -> dict:
    """Evaluate the demo's tiny model (random weights) on the first `num_images` images; meant to run in a
    fresh process whose peak RSS is then read. mode "recipe": per-batch post-processing (what train.py
    does); mode "trainer_default": the Trainer keeps every model output and scores at the end."""
    import tempfile

    from transformers import Trainer

    from .coco_eval import gt_from_table
    from .config import parse_config
    from .data.builder import load_detection_dataset
    from .metrics import CocoDetectionMetrics
    from .postprocess import postprocess_detections
    from .trainer import DetectionTrainer
    from .transforms import make_transform

    data_args, model_args, train_args, _ = parse_config([
        "configs/demo.yaml", "--output_dir", tempfile.mkdtemp(), "--dataloader_num_workers", "0",
        "--per_device_eval_batch_size", "8", "--report_to", "none"])
    data = load_detection_dataset(ann, images, cache_dir=cache_dir, subset=num_images)
    torch.manual_seed(0)
    model, processor = load_model_and_processor(model_args, {i: c["name"] for i, c in enumerate(data.categories)})
    dataset = data.dataset.with_transform(make_transform(processor, build_augmentation(
        False, [data_args.eval_size], data_args.longest_edge, data_args.eval_size)))
    metrics = CocoDetectionMetrics(gt_from_table(data.dataset, data.categories), [c["id"] for c in data.categories])
    common = dict(model=model, eval_dataset=dataset, data_collator=DetectionCollator(processor))
    if mode == "recipe":
        trainer = DetectionTrainer(args=train_args, compute_metrics=metrics, model_args=model_args, **common)
    else:
        train_args.batch_eval_metrics = False

        def compute_all(eval_pred):
            # The Trainer hands over every output by position (loss_dict, logits, pred_boxes, hidden states...):
            # pick logits and boxes by shape, per batch.
            num_labels = len(data.categories)
            for outputs, labels in zip(eval_pred.predictions, eval_pred.label_ids):
                arrays = [np.asarray(x) for x in outputs if isinstance(x, np.ndarray) and x.ndim == 3]
                logits = next(x for x in arrays if x.shape[-1] == num_labels)
                boxes = next(x for x in arrays if x.shape[-1] == 4 and x.shape[1] == logits.shape[1])
                sizes = torch.as_tensor(np.stack([np.asarray(t["orig_size"]) for t in labels]))
                dets = postprocess_detections(torch.as_tensor(logits), torch.as_tensor(boxes), sizes)
                metrics.add(dets.numpy(), np.array([int(np.asarray(t["image_id"]).reshape(-1)[0]) for t in labels]))
            result = metrics.compute()
            return {"map": result["map"]}

        trainer = Trainer(args=train_args, compute_metrics=compute_all, **common)
    result = trainer.evaluate()
    return {"mode": mode, "images": len(dataset), "map": result["eval_map"]}
