"""A pre-flight check before a long run: can this model learn these images at all?

A copy of the model memorises a handful of the user's own training images (no augmentation, evaluation size) for N
steps and is scored on the same images. A detector that cannot get above a low floor there would waste the whole run:
a blind backbone, labels that do not match their images, a learning rate that diverges. The check's figures go into
the log and the data report; a failure is one line naming what it measured and what to try.
"""

from __future__ import annotations

import copy
import logging
import tempfile

from recipe.core.errors import ConfigError, DataError

logger = logging.getLogger("recipe")

PREFLIGHT_IMAGES = 8
# A healthy detector of any family memorises 8 images well past this in a few hundred steps (tests/test_memorise.py:
# map_50 0.6-1.0 after 300 steps); a blind one stays at ~0.
PREFLIGHT_MIN_MAP_50 = 0.05
# ... and it must owe part of that to the pixels: map_50 on the images minus map_50 on the same images blanked (a model
# that does not see the image learns each box's position prior and scores the same on both). On the demo, 150 steps,
# seeds 0-2 on 1 and 2 threads (benchmarks/RESULTS.md "Test suite: margins"): healthy images gained 0.038-0.170,
# blank ones -0.003-0.003; 0.05 stopped a healthy run (seed 2, 2 threads: 0.164 vs 0.126), 0.02 sits between both.
PREFLIGHT_MIN_GAIN = 0.02


def run_preflight(model, processor, train, train_args, model_args, *, steps: int, collator_factory,
                  transform_factory, metrics_factory) -> dict:
    """Train a copy of `model` for `steps` on the first images of `train` and score it on them.

    -> {"images", "steps", "map", "map_50", "loss_first", "loss_last"}; raises DataError when map_50 stays under
    `PREFLIGHT_MIN_MAP_50`. The real run's model, RNG and output folder are untouched."""
    import torch

    from recipe.engine.trainer import DetectionTrainer

    if train_args.world_size > 1:
        raise ConfigError("preflight_steps runs in one process: run the check once without accelerate/torchrun "
                          "(e.g. python scripts/train.py ... --preflight_steps 300 --max_steps 1), then launch")
    with_boxes = _first_with_boxes(train.dataset, PREFLIGHT_IMAGES)
    if not with_boxes:
        raise DataError("preflight: no training image has a box; nothing to learn")
    subset = train.dataset.select(with_boxes[:PREFLIGHT_IMAGES])
    state = torch.random.get_rng_state()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            args = _check_arguments(train_args, tmp, steps, len(subset))
            dataset = subset.with_transform(transform_factory())
            metrics = metrics_factory(subset)
            trainer = DetectionTrainer(model=copy.deepcopy(model), args=args, train_dataset=dataset,
                                       eval_dataset=dataset, data_collator=collator_factory(),
                                       processing_class=processor, compute_metrics=metrics, model_args=model_args)
            trainer.train()
            losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
            scores = trainer.evaluate()
            # The same images blanked to the processor's mean colour: what the model gets from box priors alone.
            trainer.compute_metrics = metrics_factory(subset)
            blind = trainer.evaluate(subset.with_transform(BlankImages(transform_factory(), processor.image_mean)))
    finally:
        torch.random.set_rng_state(state)
    result = {"images": len(subset), "steps": steps, "map": scores["eval_map"], "map_50": scores["eval_map_50"],
              "map_50_blank_images": blind["eval_map_50"],
              "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None}
    logger.warning("preflight: %d training images memorised for %d steps: map %.3f, map_50 %.3f; map_50 %.3f with the "
                   "images blanked (loss %.3f -> %.3f)", result["images"], steps, result["map"], result["map_50"],
                   result["map_50_blank_images"], result["loss_first"] or 0.0, result["loss_last"] or 0.0)
    gain = result["map_50"] - result["map_50_blank_images"]
    if result["map_50"] < PREFLIGHT_MIN_MAP_50 or gain < PREFLIGHT_MIN_GAIN:
        raise DataError(
            f"preflight: after {steps} steps on {result['images']} of its own training images the model scores "
            f"map_50 {result['map_50']:.3f} on them and {result['map_50_blank_images']:.3f} on the same images "
            f"blanked (needs >= {PREFLIGHT_MIN_MAP_50} and a gain >= {PREFLIGHT_MIN_GAIN} from seeing them): it does "
            "not learn from these images as set up. Check that the images are what the labels describe "
            "(scripts/browse_dataset.py), lower the learning rate, or try more --preflight_steps")
    return result


def _first_with_boxes(dataset, count: int) -> list[int]:
    """Indices of the first `count` rows with a box, read row by row (not the whole column: COCO-size tables)."""
    table, found = dataset.with_format(None), []
    for i in range(len(table)):
        if len(table[i]["objects"]["bbox"]):
            found.append(i)
            if len(found) == count:
                break
    return found


def _check_arguments(train_args, output_dir: str, steps: int, images: int):
    """The run's arguments for the check: `steps` steps at its lr (constant after a short warm-up), batches of up to
    4, nothing saved, evaluated, logged to integrations or averaged (EMA)."""
    args = copy.deepcopy(train_args)
    args.output_dir, args.max_steps, args.num_train_epochs = output_dir, steps, 1
    args.per_device_train_batch_size = args.per_device_eval_batch_size = min(4, images)
    args.lr_scheduler_type, args.warmup_steps = "constant_with_warmup", min(20, steps // 10)
    args.eval_strategy, args.save_strategy, args.report_to = "no", "no", []
    args.load_best_model_at_end, args.use_ema, args.logging_steps = False, False, max(1, steps // 5)
    args.resume_from_checkpoint, args.push_to_hub, args.dataloader_num_workers = None, False, 0
    return args


class BlankImages:
    """A dataset transform whose images are replaced by the processor's mean colour (uint8), boxes unchanged."""

    def __init__(self, transform, image_mean):
        self.transform = transform
        self.fill = [round(255 * m) for m in image_mean]

    def __call__(self, batch: dict) -> dict:
        import torch

        out = self.transform(batch)
        fill = torch.tensor(self.fill, dtype=torch.uint8).view(3, 1, 1)
        out["pixel_values"] = [fill.expand_as(p).clone() for p in out["pixel_values"]]
        return out
