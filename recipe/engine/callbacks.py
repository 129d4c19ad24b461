"""The recipe's training callbacks (`transformers.TrainerCallback`): what happens at a step, an epoch or a log
besides the Trainer's own loop: the EMA update, stopping on a non-finite loss, a preemption-safe stop on SIGINT /
SIGTERM, no duplicate final evaluation, and the augmentation's epoch."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading

from transformers import TrainerCallback

from recipe.core.distributed import any_rank
from recipe.engine.ema import ModelEma, lag_warning

logger = logging.getLogger("recipe")


class EmaUpdateCallback(TrainerCallback):
    """Updates the EMA after every optimizer step (before that step's logging, evaluation and saving)."""

    def __init__(self, ema: ModelEma):
        self.ema = ema

    def on_train_begin(self, args, state, control, **kwargs):
        warning = lag_warning(self.ema.decay, self.ema.warmup_steps, state.max_steps)
        if warning:
            logger.warning(warning)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(model)


class NonFiniteLossCallback(TrainerCallback):
    """Stop at the first non-finite logged loss instead of burning the rest of the run."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss} at step {state.global_step}; lower the learning rate, check the data "
                "report, or train in fp32/bf16 instead of fp16")


class InterruptCallback(TrainerCallback):
    """Preemption-safe runs: on SIGINT (Ctrl-C) or SIGTERM (a cluster's preemption or time limit) the current step
    finishes, a complete checkpoint is saved (weights, optimizer, scheduler, RNG, EMA) and training stops; `run()`
    then raises `TrainingInterrupted` (one line, exit code 128 + signal). A second signal stops at once.

    Under several processes the flag is all-reduced every step, so every rank saves and stops at the same step (a
    launcher forwards the signal to each rank, not necessarily between the same two steps)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self.stopped_at: int | None = None
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; Python's own handling stays
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # the second signal: the default action, now
            self.uninstall()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        logger.warning("%s received: finishing this step and saving a checkpoint (send it again to stop at once)",
                       signal.Signals(signum).name)

    def on_step_end(self, args, state, control, **kwargs):
        if any_rank(self.received is not None, args.device):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step


class NoDuplicateFinalEvaluationCallback(TrainerCallback):
    """The Trainer evaluates at the last step when eval_strategy is "steps" (or at the last epoch's end); `run()`
    evaluates the saved model right after anyway: skip the Trainer's, unless it picks the best model."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps and not args.load_best_model_at_end:
            control.should_evaluate = False

    def on_epoch_end(self, args, state, control, **kwargs):
        self.on_step_end(args, state, control)


class AugmentationEpochCallback(TrainerCallback):
    """Tells the training augmentation which epoch starts: its streams are fixed by seed, epoch and image
    (`transforms.AugmentationSeeds`), so a resumed run augments as the uninterrupted one did."""

    def __init__(self, seeds):
        self.seeds = seeds

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the epoch's index as it starts (epoch + steps done / steps per epoch, exactly 1.0 at the
        # end of each), or a fraction of the way into it when a run resumes mid-epoch; None before the first step.
        self.seeds.set_epoch(math.floor(state.epoch or 0))
