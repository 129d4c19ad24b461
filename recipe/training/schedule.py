"""`--schedule auto`: a schedule that fits the dataset instead of COCO's.

The family configs carry their originals' COCO schedules (72-132 epochs of 118k images, warm-up and EMA warm-up of
500-2000 steps, no-augmentation phases of 2-12 epochs). On a few hundred images those numbers misfire: DEIM's own
maintainers found a user's learning-rate warm-up ending near epoch 100 of 132 on a small set
(Intellindust-AI-Lab/DEIM #5), and a config's 8 final epochs without augmentation take most of a 10-epoch run.
The rule, from the number of training images N and the images per optimizer step B (batch x processes x gradient
accumulation), each part written to the log and the model card:

- epochs E = clamp(ceil(100 * sqrt(500 / N)), 12, 200): rf-detr's default of 100 epochs for a fine-tuning set of
  about 500 images (rfdetr.roboflow.com, "Training Parameters"), more for fewer images, down to the 12-epoch (1x)
  schedule for large sets; epochs or max_steps typed on the command line are kept;
- warm-up and EMA warm-up: 5% of the run's steps T (at most the originals' 2000);
- EMA decay: at most 1 - 10 / T, an average over the run's last tenth (`engine.ema.lag_warning`'s advice);
- no-augmentation epochs, when the config has any: a tenth of the epochs, at least 1 (the originals: D-FINE 8 of 80,
  DEIM 8 of 58, DEIMv2 12 of 132);
- evaluation (and saving, when it follows evaluation): every epoch up to 25 epochs, else every ceil(E / 25) epochs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

logger = logging.getLogger("recipe")

MIN_EPOCHS, MAX_EPOCHS = 12, 200
WARMUP_SHARE, MAX_WARMUP = 0.05, 2000
NO_AUG_SHARE = 0.1
EVALUATIONS = 25


@dataclass(frozen=True)
class Schedule:
    images: int
    step_images: int
    steps_per_epoch: int
    epochs: int
    total_steps: int
    warmup_steps: int
    ema_warmup_steps: int
    ema_decay: float
    no_aug_epochs: int
    eval_every_epochs: int

    def describe(self) -> str:
        return (f"auto ({self.images} images, {self.step_images} per step): {self.epochs} epochs "
                f"({self.total_steps} steps), warm-up {self.warmup_steps} steps, EMA warm-up {self.ema_warmup_steps} "
                f"steps, EMA decay {self.ema_decay:.4g}, {self.no_aug_epochs} epochs without augmentation, "
                f"evaluation every {self.eval_every_epochs} epoch(s)")


def auto_epochs(images: int) -> int:
    return min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(100 * math.sqrt(500 / max(1, images)))))


def auto_schedule(images: int, *, step_images: int, steps_per_epoch: int, config_no_aug_epochs: int,
                  config_ema_decay: float, epochs: int | None = None,
                  max_steps: int | None = None) -> Schedule:
    """The rule of the module's docstring. `epochs` / `max_steps`: the command line's, kept when given."""
    if max_steps:
        epochs = math.ceil(max_steps / steps_per_epoch)
    epochs = auto_epochs(images) if epochs is None else epochs
    total = max_steps or epochs * steps_per_epoch
    warmup = max(1, min(MAX_WARMUP, round(WARMUP_SHARE * total)))
    no_aug = 0
    if config_no_aug_epochs:
        no_aug = min(epochs - 1, max(1, round(NO_AUG_SHARE * epochs)))
    return Schedule(images=images, step_images=step_images, steps_per_epoch=steps_per_epoch, epochs=epochs,
                    total_steps=total, warmup_steps=warmup, ema_warmup_steps=warmup,
                    ema_decay=min(config_ema_decay, max(0.0, 1 - 10 / total)), no_aug_epochs=max(0, no_aug),
                    eval_every_epochs=max(1, math.ceil(epochs / EVALUATIONS)))


def apply_schedule(data_args, train_args, images: int) -> Schedule | None:
    """`--schedule auto`: derive the schedule for `images` training images and set it on the arguments (what the
    command line typed is kept). -> the schedule (None with --schedule config, which only warns where the config's
    schedule misfits the run: `misfit_warning`)."""
    per_epoch = steps_per_epoch(train_args, images)
    if train_args.schedule != "auto":
        warning = misfit_warning(data_args, train_args, per_epoch)
        if warning:
            logger.warning(warning)
        return None
    typed = set(getattr(train_args, "typed_fields", ()))
    step_images = (train_args.per_device_train_batch_size * max(1, train_args.world_size)
                   * train_args.gradient_accumulation_steps)
    given_steps = train_args.max_steps if "max_steps" in typed and train_args.max_steps > 0 else None
    schedule = auto_schedule(
        images, step_images=step_images, steps_per_epoch=per_epoch, config_no_aug_epochs=data_args.no_aug_epochs,
        config_ema_decay=train_args.ema_decay, max_steps=given_steps,
        epochs=math.ceil(train_args.num_train_epochs) if "num_train_epochs" in typed else None)
    set_unless_typed(train_args, typed, num_train_epochs=schedule.epochs, warmup_steps=schedule.warmup_steps,
                     ema_warmup_steps=schedule.ema_warmup_steps, ema_decay=schedule.ema_decay,
                     max_steps=given_steps or -1)
    set_unless_typed(data_args, typed, no_aug_epochs=schedule.no_aug_epochs)
    if "eval_strategy" not in typed and "eval_steps" not in typed and str(train_args.eval_strategy) != "no":
        evaluate_every(train_args, schedule.eval_every_epochs * per_epoch)
    train_args.schedule_line = schedule.describe()
    logger.warning("schedule %s", train_args.schedule_line)
    return schedule


def steps_per_epoch(train_args, images: int) -> int:
    """Optimizer steps in one epoch of `images`, as the Trainer counts them (batches per process // accumulation)."""
    per_process = -(-images // max(1, train_args.world_size))
    batches = -(-per_process // train_args.per_device_train_batch_size)
    return max(1, batches // train_args.gradient_accumulation_steps)


def misfit_warning(data_args, train_args, per_epoch: int) -> str | None:
    """A line when a fixed schedule's warm-up or final phase takes most of the run (a COCO schedule on a small set,
    or a short run of it), else None."""
    epochs = math.ceil(train_args.num_train_epochs)
    total = train_args.max_steps if train_args.max_steps and train_args.max_steps > 0 else epochs * per_epoch
    warmup = train_args.warmup_steps if train_args.warmup_steps >= 1 else train_args.warmup_steps * total
    if warmup > 0.3 * total or (data_args.no_aug_epochs and data_args.no_aug_epochs > 0.5 * epochs):
        return (f"the schedule misfits this run of {total} steps ({epochs} epochs): warm-up {warmup:g} steps, "
                f"{data_args.no_aug_epochs} epochs without augmentation; --schedule auto fits them to the data")
    return None


def set_unless_typed(args, typed: set[str], **values) -> None:
    for name, value in values.items():
        if name not in typed:
            setattr(args, name, value)


def evaluate_every(train_args, steps: int) -> None:
    """Evaluate every `steps` steps; checkpoints follow when they followed evaluation (best-model tracking needs
    them on evaluation steps)."""
    saves_with_eval = str(train_args.save_strategy) in ("epoch", "IntervalStrategy.EPOCH", "SaveStrategy.EPOCH") or (
        train_args.load_best_model_at_end)
    train_args.eval_strategy, train_args.eval_steps = "steps", steps
    if saves_with_eval:
        train_args.save_strategy, train_args.save_steps = "steps", steps


def schedule_record(schedule: Schedule | None) -> dict | None:
    return None if schedule is None else {"rule": "auto", **asdict(schedule)}
