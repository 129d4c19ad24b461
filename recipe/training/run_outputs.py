"""What a finished training run leaves beside its weights: the run's history, per-class AP, the suggested score
threshold, the figures and the model card; and the one Hub push of the final folder."""

from __future__ import annotations

import json
import logging
import os

from recipe.core.distributed import is_main_process
from recipe.core.errors import ConfigError
from recipe.training.card import write_model_card

logger = logging.getLogger("recipe")


def take_hub_push(train_args) -> dict | None:
    """The Trainer would push every checkpoint as it is saved; the recipe pushes the final folder once,
    after the final evaluation (`push_folder`). Takes the request (and the token) off the arguments."""
    if not train_args.push_to_hub:
        return None
    if not train_args.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id (e.g. your-name/deformable-detr-mydata)")
    push = {"repo_id": train_args.hub_model_id, "token": train_args.hub_token,
            "private": train_args.hub_private_repo}
    train_args.push_to_hub, train_args.hub_token = False, None
    return push


def save_outputs(trainer, data_args, metrics, final: dict, precision: str) -> None:
    """The run's history (trainer_state.json), per-class AP, the plots and the model card beside the weights
    (main process)."""
    if not is_main_process():
        return
    output_dir = trainer.args.output_dir
    # The Trainer writes trainer_state.json only inside checkpoints; a run that saves none would lose its history.
    trainer.state.save_to_json(os.path.join(output_dir, "trainer_state.json"))
    plots, threshold = {}, None
    if metrics is not None and metrics.last_result is not None:
        with open(os.path.join(output_dir, "eval_per_class.json"), "w") as f:
            json.dump(metrics.last_result["per_class"], f, indent=2)
        threshold = save_suggested_threshold(trainer, metrics)
        plots = save_plots(trainer, metrics, score_threshold=threshold["threshold"] if threshold else None)
    ema = None
    if trainer.ema is not None:
        ema = (f"the exponential moving average (decay {trainer.args.ema_decay}, warm-up "
               f"{trainer.args.ema_warmup_steps} steps, {trainer.ema.updates} updates), evaluated as saved")
    write_model_card(output_dir, trainer.model, data_args=data_args, metrics=final, precision=precision,
                     plots=plots, ema=ema, threshold=threshold,
                     schedule=getattr(trainer.args, "schedule_line", None))


def save_suggested_threshold(trainer, metrics) -> dict | None:
    """The score threshold of best F1 on the validation set (`analysis.best_f1_threshold`): written into the saved
    config.json as `suggested_threshold` (predict's default; the card names it for `pipeline()`) and logged.
    None when the final evaluation detected nothing."""
    from recipe.evaluation.analysis import best_f1_threshold

    best = best_f1_threshold(metrics.coco_gt, metrics.last_rows)
    if best["threshold"] is None:
        logger.warning("no detections in the final evaluation: no score threshold to suggest")
        return None
    best["threshold"] = round(best["threshold"], 4)
    config = trainer.accelerator.unwrap_model(trainer.model).config
    config.suggested_threshold = best["threshold"]
    config.save_pretrained(trainer.args.output_dir)
    logger.info("suggested score threshold %.4f (best F1 %.3f at IoU 0.5 on the validation set: precision %.3f, "
                "recall %.3f); saved in config.json", best["threshold"], best["f1"], best["precision"],
                best["recall"])
    return best


def save_plots(trainer, metrics, score_threshold: float | None = None) -> dict[str, str]:
    """The figures of the final evaluation into output_dir/plots; a plotting failure is logged, not raised (the
    model is already saved)."""
    from recipe.evaluation.plots import write_plots

    if metrics.last_rows is None:
        return {}
    table = trainer.eval_dataset.with_format(None).select_columns(["image_id", "image_path"])
    try:
        return write_plots(os.path.join(trainer.args.output_dir, "plots"), metrics.coco_gt, metrics.last_rows,
                           image_paths=dict(zip(table["image_id"], table["image_path"])),
                           log_history=trainer.state.log_history,
                           score_threshold=score_threshold)
    except Exception:  # hours of training must not end in a traceback over a figure
        logger.exception("plots could not be drawn (the model and metrics are saved)")
        return {}
