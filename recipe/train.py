"""run(): wire data, model and Trainer; train, evaluate, save a Hub-style model folder."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, set_seed

from .collate import DetectionCollator
from .data.builder import DetectionData, load_detection_dataset
from .data.coco import DataError
from .data.sanitize import format_report, save_reports
from .metrics import METRIC_KEYS, CocoDetectionMetrics, gt_from_table, postprocess_detections
from .modeling import check_model_available, load_model_and_processor, uses_softmax
from .optim import build_param_groups
from .transforms import build_augmentation, make_transform

logger = logging.getLogger("recipe")


class DetectionTrainer(Trainer):
    """Trainer with the original recipe's parameter groups and a detection-aware prediction step."""

    def __init__(self, *args, model_args=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_args = model_args

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            groups = build_param_groups(opt_model, self.args.learning_rate, self.args.weight_decay,
                                        self.model_args.backbone_lr_multiplier,
                                        self.model_args.linear_proj_lr_multiplier)
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)  # each group carries its own
            self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """-> (loss, detections [B, K, 6] (score, label, xywh_abs in the original image), image_ids [B]).

        Post-processing here, batch by batch, keeps eval memory to the kept detections."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.loss.detach().mean() if outputs.loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        labels = inputs["labels"]
        orig_sizes = torch.stack([t["orig_size"] for t in labels])
        detections = postprocess_detections(outputs.logits, outputs.pred_boxes, orig_sizes,
                                            top_k=self.model_args.top_k, softmax=uses_softmax(self.model))
        image_ids = torch.cat([t["image_id"] for t in labels])
        return loss, detections, image_ids


class NonFiniteLossCallback(TrainerCallback):
    """Stop at the first non-finite logged loss instead of burning the rest of the run."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss} at step {state.global_step}; lower the learning rate, check the data "
                "report, or train in fp32/bf16 instead of fp16")


def resolve_precision(train_args) -> str:
    """--amp: bf16 where supported, else fp16 on CUDA; on CPU bf16 if the CPU supports it, else fp32."""
    if not train_args.amp or train_args.bf16 or train_args.fp16:
        return "bf16" if train_args.bf16 else "fp16" if train_args.fp16 else "fp32"
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            train_args.bf16 = True
            return "bf16"
        train_args.fp16 = True
        return "fp16"
    if cpu_supports_bf16():
        train_args.bf16 = True
        return "bf16"
    warnings.warn("--amp: no CUDA and this CPU has no native bf16; training in fp32")
    return "fp32"


def check_world_size(train_args) -> None:
    """A multi-process launch that ends up with world size 1 trains N separate models: never silently."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and train_args.world_size != launched:
        raise RuntimeError(f"launched {launched} processes but the Trainer formed a group of "
                           f"{train_args.world_size}; on a machine without CUDA pass --use_cpu true")
    if launched > 1 and train_args.process_index == 0:
        logger.warning("distributed run: %d processes (%s)", launched, train_args.parallel_mode)


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:
        return False


def load_split(data_args, img, ann, name, train_args) -> DetectionData:
    with train_args.main_process_first(desc=f"building the {name} table"):
        return load_detection_dataset(ann, img, data_args.annotation_format, data_args.dataset_cache_dir,
                                      data_args.subset, data_args.box_convention,
                                      data_args.bdd_image_size)


def prepare_demo_data(data_args) -> None:
    if data_args.demo_data and not (Path(data_args.demo_data) / "train" / "annotations.json").is_file():
        from .data.synthetic import make_demo_dataset

        logger.warning("demo data not found: generating it in %s", data_args.demo_data)
        make_demo_dataset(data_args.demo_data)


def run(data_args, model_args, train_args) -> dict:
    """Train (and evaluate, if a validation set is given). Returns the final eval metrics (or {})."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    precision = resolve_precision(train_args)
    check_world_size(train_args)
    if not torch.cuda.is_available():
        train_args.dataloader_pin_memory = False  # nothing to pin to; avoids a warning per dataloader
    check_model_available(model_args)  # before any data is read
    if not data_args.train_ann or not data_args.train_img:
        prepare_demo_data(data_args)
    elif data_args.demo_data:
        with train_args.main_process_first(desc="demo data"):
            prepare_demo_data(data_args)
    if not data_args.train_ann or not data_args.train_img:
        raise DataError("no training data: set train_img and train_ann (or --train-img/--train-ann)")

    train = load_split(data_args, data_args.train_img, data_args.train_ann, "train", train_args)
    val = None
    if data_args.val_ann:
        val = load_split(data_args, data_args.val_img, data_args.val_ann, "validation", train_args)
        if val.categories != train.categories:
            raise DataError(f"{data_args.val_ann}: categories differ from {data_args.train_ann}; "
                            "both files need the same categories in the same order")
    else:
        train_args.eval_strategy = "no"
    reports = {"train": train.report, **({"validation": val.report} if val else {})}
    if train_args.process_index == 0:
        for split, report in reports.items():
            print(format_report(report, f"{split} ({data_args.train_ann if split == 'train' else data_args.val_ann})"))
        save_reports(reports, train_args.output_dir)

    set_seed(train_args.seed)
    id2label = {i: c["name"] for i, c in enumerate(train.categories)}
    model, processor = load_model_and_processor(model_args, id2label)
    # The saved processor then resizes like our eval transform (for pipeline() and evaluate.py).
    processor.size = {"shortest_edge": data_args.eval_size, "longest_edge": data_args.longest_edge}
    aug_args = dict(shortest_edges=data_args.shortest_edges, longest_edge=data_args.longest_edge,
                    eval_size=data_args.eval_size)
    train_ds = train.dataset.with_transform(make_transform(processor, build_augmentation(
        True, hflip_prob=data_args.hflip_prob, crop_prob=data_args.crop_prob,
        color_jitter_prob=data_args.color_jitter_prob, **aug_args)))
    eval_ds, metrics = None, None
    if val:
        eval_ds = val.dataset.with_transform(make_transform(processor, build_augmentation(False, **aug_args)))
        metrics = CocoDetectionMetrics(gt_from_table(val.dataset, val.categories),
                                       [c["id"] for c in val.categories], model_args.score_threshold,
                                       model_args.metric_backend)
    logger.info("precision: %s; train images: %d; val images: %d", precision, len(train_ds),
                len(eval_ds) if eval_ds is not None else 0)

    trainer = DetectionTrainer(model=model, args=train_args, train_dataset=train_ds, eval_dataset=eval_ds,
                               data_collator=DetectionCollator(processor), processing_class=processor,
                               compute_metrics=metrics, callbacks=[NonFiniteLossCallback()],
                               model_args=model_args)
    trainer.train(resume_from_checkpoint=train_args.resume_from_checkpoint)
    trainer.save_model()
    final = {}
    if eval_ds is not None:
        final = trainer.evaluate()
        trainer.log_metrics("eval", final)
        trainer.save_metrics("eval", final, combined=False)
        if trainer.is_world_process_zero() and metrics.last_result is not None:
            with open(os.path.join(train_args.output_dir, "eval_per_class.json"), "w") as f:
                json.dump(metrics.last_result["per_class"], f, indent=2)
    if trainer.is_world_process_zero():
        write_model_card(train_args.output_dir, model, data_args, final, precision)
    return final


def write_model_card(output_dir: str, model, data_args, metrics: dict, precision: str) -> None:
    rows = "\n".join(f"| {k} | {metrics[f'eval_{k}']:.4f} |" for k in METRIC_KEYS if f"eval_{k}" in metrics)
    per_class = "\n".join(f"| {k[len('eval_map_'):]} | {v:.4f} |" for k, v in metrics.items()
                          if k.startswith("eval_map_") and k[len("eval_map_"):] not in
                          {m[len("map_"):] for m in METRIC_KEYS if m.startswith("map_")})
    text = f"""---
library_name: transformers
pipeline_tag: object-detection
tags: [object-detection, {model.config.model_type}]
---

# {model.config.model_type} fine-tuned for object detection

Trained with the detection fine-tuning recipe on `{data_args.train_ann}`; evaluated with COCOeval
(pycocotools, bbox, top-100 detections per image, score threshold 0 unless set) on `{data_args.val_ann}`.
Precision: {precision}. Classes: {", ".join(model.config.id2label[i] for i in sorted(model.config.id2label))}.

## Evaluation

| metric | value |
|---|---|
{rows or "| (no validation set) | |"}

Per-class AP (IoU 0.50:0.95):

| class | AP |
|---|---|
{per_class or "| - | - |"}

## Use

```python
from transformers import pipeline
detector = pipeline("object-detection", model="{output_dir}")
```
"""
    with open(os.path.join(output_dir, "README.md"), "w") as f:
        f.write(text)
