"""Run a detector on new images: drawn images, a results file (COCO results or BDD100K frames), a progress bar.

Pre- and post-processing are the evaluation's: the image reader of training, the eval resize
(`augment.eval_augmentation_for` the size in the folder's preprocessor_config.json), `DetectionCollator`'s
normalisation (the image processor's values, once per batch), padding and pixel mask, `postprocess_detections`
(top-k over queries x classes, boxes `xywh_abs` in the original image), labels mapped to the dataset's category
ids (config.json `category_ids`, saved by training; a checkpoint without it, e.g. a published COCO one, uses its
label ids).
"""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path

import numpy as np
import torch

from recipe.config.command_arguments import DEFAULT_THRESHOLD, PredictArguments
from recipe.core.errors import ConfigError
from recipe.core.stage_timer import stage
from recipe.evaluation.results_writer import results_from_detections, write_results_file
from recipe.inference.inputs import ImageFiles, collate_readable, images_to_predict
from recipe.models.loading import load_detector
from recipe.models.postprocess import DET_BOX, DET_LABEL, DET_SCORE

logger = logging.getLogger("recipe")


def pick_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@torch.inference_mode()
def detect(model, batch: dict, device: torch.device, *, top_k: int) -> np.ndarray:
    """-> detections [B, K, 6] (score, label, xywh_abs in each original image)."""
    from recipe.core.boxes import frame_sizes
    from recipe.models.families import uses_softmax
    from recipe.models.postprocess import postprocess_detections

    inputs = {"pixel_values": batch["pixel_values"].to(device)}
    if "pixel_mask" in inspect.signature(model.forward).parameters:  # YOLOS, for one, takes none
        inputs["pixel_mask"] = batch["pixel_mask"].to(device)
    with stage("forward"):
        outputs = model(**inputs)
    frames = frame_sizes(batch["labels"]).to(device)  # the image, or the padded canvas (mask-blind models)
    return postprocess_detections(outputs.logits, outputs.pred_boxes, frames, top_k=top_k,
                                  softmax=uses_softmax(model.config.model_type)).cpu().numpy()


def prepare_detector(args: PredictArguments):
    """-> (model on its device, processor, category ids, the evaluation resize of its processor, device)."""
    from recipe.pipeline.augment import eval_augmentation_for
    from recipe.pipeline.processor_size import rule_of

    device = pick_device(args.device)
    model, processor, category_ids = load_detector(args.model)
    augmentation = eval_augmentation_for(processor.size, rule=rule_of(processor),
                                         source=f"{args.model} (its preprocessor_config.json)")
    return model.to(device), processor, category_ids, augmentation, device


def predict(args: PredictArguments, dataset_args=None) -> dict:
    """Run the model over the images (`args.images`, or the images of a split of `dataset_args.dataset`, with their
    image ids); write `output/predictions.json` and (with `draw`) `output/images/<name>`.

    -> {"images": read, "skipped": [unreadable names], "detections": kept, "results": path, "drawn": folder}."""
    from tqdm.auto import tqdm

    if args.batch_size < 1 or args.top_k < 1:
        raise ConfigError(f"--batch_size {args.batch_size} / --top_k {args.top_k}: both must be at least 1")
    files, names, ids = images_to_predict(args, dataset_args)
    model, processor, category_ids, augmentation, device = prepare_detector(args)
    threshold = score_threshold(args.threshold, model.config)
    label_names = {int(k): v for k, v in model.config.id2label.items()}
    loader = torch.utils.data.DataLoader(ImageFiles(files, augmentation),
                                         batch_size=args.batch_size, num_workers=args.num_workers,
                                         collate_fn=collate_readable(model.config, processor))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results, skipped, best_score = [], [], None
    with tqdm(total=len(files), unit="img", desc="predict") as bar:
        for batch in loader:
            for item in batch["failed"]:
                skipped.append(names[item["index"]])
                bar.write(f"skipped {item['error']}")
            if batch["items"]:
                for item, dets in zip(batch["items"], detect(model, batch, device, top_k=args.top_k)):
                    i = item["index"]
                    with stage("postprocess"):
                        if len(dets):
                            best_score = max(best_score or 0.0, float(dets[:, DET_SCORE].max()))
                        kept = dets[dets[:, DET_SCORE] > threshold]
                        results += results_from_detections(kept, image_id=ids[i], category_ids=category_ids,
                                                           file_name=names[i])
                    if args.draw:
                        with stage("draw"):
                            save_drawn(item["image"], kept, out / "images" / names[i], label_names)
            bar.update(len(batch["failed"]) + len(batch["items"]))
    results_path = write_results(results, out, fmt=args.format, names=dict(zip(ids, names)),
                                 category_names={c: label_names[k] for k, c in enumerate(category_ids)},
                                 box_convention=args.box_convention)
    summary = {"images": len(files) - len(skipped), "skipped": skipped, "detections": len(results),
               "results": str(results_path), "drawn": str(out / "images") if args.draw else None,
               "threshold": threshold, "best_score": best_score}
    print_summary(summary, args)
    return summary


def save_drawn(image: np.ndarray, dets: np.ndarray, path: Path, label_names: dict[int, str]) -> None:
    from recipe.core.draw import draw_boxes

    drawn = draw_boxes(image, dets[:, DET_BOX], dets[:, DET_LABEL].astype(int), names=label_names,
                       scores=dets[:, DET_SCORE])
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    drawn.save(path, quality=92) if path.suffix.lower() in (".jpg", ".jpeg", ".webp") else drawn.save(path)


def write_results(results: list[dict], out: Path, *, fmt: str, names: dict[int, str], category_names: dict[int, str],
                  box_convention: str = "inclusive") -> Path:
    """predictions.json: the COCO results list, or a BDD100K frame list (one frame per image, read or not
    detected) with a score on each label."""
    from recipe.data.result_formats import payload

    return write_results_file(out / "predictions.json", payload(fmt, results, names=names,
                                                                category_names=category_names,
                                                                box_convention=box_convention))


def score_threshold(given: float | None, config) -> float:
    """--threshold if given, else the model's `suggested_threshold` (training's best F1 on its validation set),
    else DEFAULT_THRESHOLD; logged with its source."""
    if given is not None:
        return given
    suggested = getattr(config, "suggested_threshold", None)
    if suggested is not None:
        logger.info("score threshold %g: the model's suggested_threshold (best F1 on its validation set); "
                    "--threshold overrides it", suggested)
        return float(suggested)
    logger.info("score threshold %g (the model suggests none); --threshold sets it", DEFAULT_THRESHOLD)
    return DEFAULT_THRESHOLD


def print_summary(summary: dict, args: PredictArguments) -> None:
    print(f"{summary['images']} images, {summary['detections']} detections scoring above {summary['threshold']:g} "
          f"-> {summary['results']} ({args.format})" + (f"; drawn images in {summary['drawn']}"
                                                        if summary["drawn"] else ""))
    if not summary["detections"] and summary["images"]:
        best = summary["best_score"]
        print("nothing scored above the threshold: " + (
            "the model detected nothing at all" if best is None else
            f"the highest score was {best:.3g}; try --threshold {math.floor(best * 0.9 * 1000) / 1000:g}"))
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} unreadable image(s): {', '.join(summary['skipped'])}")


