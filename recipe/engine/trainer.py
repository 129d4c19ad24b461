"""The Trainer subclass: the original recipe's parameter groups and a detection-aware prediction step."""

from __future__ import annotations

import logging
import re

import torch
from transformers import Trainer

from recipe.core.boxes import frame_sizes
from recipe.core.distributed import broadcast_from_main
from recipe.core.errors import ConfigError
from recipe.engine.callbacks import EmaUpdateCallback
from recipe.engine.ema import ModelEma
from recipe.engine.optimizer_groups import build_param_groups
from recipe.models.checkpoint_weights import load_checkpoint_weights
from recipe.models.families import family_of, uses_softmax, vit_depth
from recipe.models.postprocess import postprocess_detections
from recipe.pipeline.device_batch import normalise_batch

logger = logging.getLogger("recipe")


class DetectionTrainer(Trainer):
    """Trainer with per-group learning rates and a prediction step that returns kept detections.

    `model_args` supplies the lr multipliers (training); `top_k` comes from EvalArguments (evaluation);
    `train_sampler` replaces the Trainer's shuffling (`pipeline.sampling.RepeatFactorSampler`)."""

    def __init__(self, *args, model_args=None, top_k: int = 100, train_sampler=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_args = model_args
        self.top_k = top_k
        self.train_sampler = train_sampler
        self.loss_terms = LossTermAverager()
        self.ema = None
        if getattr(self.args, "use_ema", False):
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                raise ConfigError("use_ema is not supported with DeepSpeed or FSDP (their parameters are sharded); "
                                  "turn one of them off")
            self.start_ema()

    def start_ema(self) -> None:
        """The EMA of the current model, with the arguments' decay and warm-up (one update callback at a time)."""
        self.pop_callback(EmaUpdateCallback)
        self.ema = ModelEma(self.model, self.args.ema_decay, self.args.ema_warmup_steps)
        self.add_callback(EmaUpdateCallback(self.ema))
        logger.info("EMA of the weights (decay %s, warm-up %d steps): evaluation and the saved model use it",
                    self.args.ema_decay, self.args.ema_warmup_steps)

    def _hp_search_setup(self, trial) -> None:
        """A trial of `Trainer.hyperparameter_search` starts (after `model_init` built its model): the Trainer sets
        the trial's TrainingArguments fields; a ModelArguments field of the trial (backbone_lr_multiplier, read by
        `create_optimizer`) goes to `model_args`, and the EMA starts again on the trial's model with the trial's
        ema_decay (the one built in __init__ averages the model built there, with the arguments' first decay)."""
        if self.hp_search_backend is None or trial is None:
            return super()._hp_search_setup(trial)
        space, model_fields = self.hp_space, {}

        def training_space(t):  # the Trainer would warn about, and skip, a name TrainingArguments lacks
            params = dict(space(t))
            for name in [n for n in params if not hasattr(self.args, n) and hasattr(self.model_args, n)]:
                model_fields[name] = params.pop(name)
            return params

        self.hp_space = training_space
        try:
            super()._hp_search_setup(trial)
        finally:
            self.hp_space = space
        for name, value in model_fields.items():
            setattr(self.model_args, name, value)
        if self.ema is not None:
            self.start_ema()
        return None

    def _get_train_sampler(self, train_dataset=None):
        if self.train_sampler is not None and (train_dataset is None or train_dataset is self.train_dataset):
            return self.train_sampler
        return super()._get_train_sampler(train_dataset)

    def take_main_buffers(self) -> None:
        """Several processes: every rank takes rank 0's buffers (BatchNorm running statistics: each rank's own
        batches update them between DDP's broadcasts), so every rank scores the model that rank 0 saves. Without it
        the demo's two-process run reported map 0.00259 and its saved folder gave 0.00285 on one or two processes
        (tests/test_distributed.py). A collective: every rank calls it."""
        broadcast_from_main(list(self.accelerator.unwrap_model(self.model).buffers()))

    def evaluate(self, *args, **kwargs):
        """With EMA: evaluated with the averaged weights (the originals evaluate their EMA model)."""
        self.take_main_buffers()
        if self.ema is None:
            return super().evaluate(*args, **kwargs)
        self.ema.synchronize()
        with self.ema.applied(self.accelerator.unwrap_model(self.model)):
            return super().evaluate(*args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Checkpoints (`_internal_call`) hold the trained weights plus the EMA state (`ema.safetensors`), so a
        resumed run continues both; the final folder (and what is pushed) holds the EMA weights."""
        self.take_main_buffers()  # every rank calls save_model
        if self.ema is None:
            return super().save_model(output_dir, _internal_call)
        self.ema.synchronize()  # every rank calls save_model
        if _internal_call:
            super().save_model(output_dir, _internal_call)
            if self.args.should_save:
                self.ema.save(output_dir or self.args.output_dir)
            return None
        with self.ema.applied(self.accelerator.unwrap_model(self.model)):
            return super().save_model(output_dir, _internal_call)

    def _prepare_inputs(self, inputs):
        """On the device, a uint8 batch (`DetectionCollator.normalise_on_device`) is normalised: the loader ships
        4x fewer bytes and the GPU does the arithmetic."""
        inputs = super()._prepare_inputs(inputs)
        processor = getattr(self.data_collator, "image_processor", None)
        return normalise_batch(inputs, processor) if processor is not None else inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The Trainer's loss; the model's loss terms (`outputs.loss_dict`) are kept for the next log."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            self.loss_terms.add(getattr(outputs, "loss_dict", None))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # A training log (it has "loss"; eval logs have "eval_loss"): add each loss term's mean since the last
        # one, so the console, log_history and every report_to integration see them.
        if "loss" in logs:
            reduce = self.accelerator.reduce if self.args.world_size > 1 else None
            logs.update(self.loss_terms.pop_means(reduce))
            backbone = [g["lr"] for g in getattr(self.optimizer, "param_groups", []) if g.get("name") == "backbone"]
            if backbone and "learning_rate" in logs:  # `learning_rate` is the main group's (listed first)
                logs["learning_rate_backbone"] = backbone[0]
        super().log(logs, start_time)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            family = family_of(opt_model.config.model_type)
            multiplier = self.model_args.backbone_lr_multiplier
            groups = build_param_groups(
                opt_model, self.args.learning_rate, self.args.weight_decay,
                family.backbone_lr_multiplier if multiplier is None else multiplier,
                self.model_args.linear_proj_lr_multiplier, backbone_keys=family.backbone_keys,
                linear_proj_keys=family.linear_proj_keys,
                no_decay_keys=family.no_decay_keys, vit_layer_decay=family.vit_layer_decay, vit_keys=family.vit_keys,
                vit_num_layers=vit_depth(opt_model.config))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            optimizer_kwargs.pop("lr", None)  # each group carries its own
            self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return self.optimizer

    # Checkpoints (resume, load_best_model_at_end) are read through from_pretrained's key mapping, never with the
    # Trainer's load_state_dict(strict=False), which silently leaves renamed weights at random (see
    # load_checkpoint_weights). DeepSpeed and FSDP keep their own checkpoint formats, under the live model's names.
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = self.accelerator.unwrap_model(self.model if model is None else model)
        load_checkpoint_weights(model, resume_from_checkpoint)
        if self.ema is not None:
            self.ema.load(resume_from_checkpoint)
        logger.info("weights of %s loaded (every key matched)%s", resume_from_checkpoint,
                    "" if self.ema is None else f", EMA after {self.ema.updates} updates")

    def _load_best_model(self):
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            return super()._load_best_model()
        load_checkpoint_weights(self.accelerator.unwrap_model(self.model), self.state.best_model_checkpoint)
        if self.ema is not None:
            self.ema.load(self.state.best_model_checkpoint)
        logger.info("best model loaded from %s (%s %s)", self.state.best_model_checkpoint,
                    self.args.metric_for_best_model, self.state.best_metric)

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
        detections = postprocess_detections(outputs.logits, outputs.pred_boxes, frame_sizes(labels),
                                            top_k=self.top_k, softmax=uses_softmax(self.model.config.model_type))
        image_ids = torch.cat([t["image_id"] for t in labels])
        return loss, detections, image_ids


class LossTermAverager:
    """Sums of the model's loss terms between two logging steps -> their means.

    Only the final decoder layer's terms are kept (`loss_ce`, `loss_bbox`, `loss_giou`, `cardinality_error`, or a
    family's own names); auxiliary and denoising copies end in `_<n>` (transformers' loss_dict naming)."""

    AUXILIARY = re.compile(r"_\d+$")

    def __init__(self):
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, loss_dict: dict | None) -> None:
        if not loss_dict:
            return
        for name, value in loss_dict.items():
            if self.AUXILIARY.search(name):
                continue
            value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            self._sums[name] = self._sums[name] + value if name in self._sums else value
        self._count += 1

    def pop_means(self, reduce=None) -> dict[str, float]:
        """The means since the last call (then start over). `reduce`: e.g. accelerator.reduce, to average over
        processes (every process logs at the same steps, so the collective call is matched)."""
        if not self._count:
            return {}
        names = sorted(self._sums)
        means = torch.stack([self._sums[n].reshape(()) for n in names]) / self._count
        if reduce is not None:
            means = reduce(means, reduction="mean")
        self._sums, self._count = {}, 0
        return dict(zip(names, means.tolist()))
