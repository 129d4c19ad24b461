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

from recipe.config.command_arguments import DEFAULT_THRESHOLD, PredictArguments, TileArguments
from recipe.core.errors import ConfigError
from recipe.core.stage_timer import stage
from recipe.evaluation.results_writer import results_from_detections, write_results_file
from recipe.inference.inputs import ImageFiles, collate_readable, eval_pixels, images_to_predict
from recipe.inference.tiling import cut_by_window, merge_detections, shift_detections, tile_windows
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


def detections_per_image(model, files: list[Path], augmentation, collate, device: torch.device,
                         tile_args: TileArguments | None = None, *, batch_size: int, num_workers: int, top_k: int):
    """Yield (item, detections [K, 6] `xywh_abs` in the image) for each readable image of `files` in order (its
    `ImageFiles` item), (item with its "error", None) for each unreadable one. With `tile_args` on, each image is
    detected by `detect_tiled`; otherwise `batch_size` images per forward pass."""
    loader = torch.utils.data.DataLoader(ImageFiles(files, augmentation), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=collate)
    tiled = tile_args is not None and tile_args.on
    for batch in loader:
        for item in batch["failed"]:
            yield item, None
        if tiled:
            for item in batch["items"]:
                yield item, detect_tiled(model, item, augmentation, collate, device, tile_args,
                                         batch_size=batch_size, top_k=top_k)
        elif batch["items"]:
            yield from zip(batch["items"], detect(model, batch, device, top_k=top_k))


def detect_tiled(model, item: dict, augmentation, collate, device: torch.device, tile_args: TileArguments, *,
                 batch_size: int, top_k: int) -> np.ndarray:
    """One image's detections [K, 6] (boxes `xywh_abs` in the image) from its `tiling.tile_windows` (and, with
    `tile_full_frame`, the whole image: `item` as `ImageFiles` gives it), `batch_size` windows per forward pass, each
    window resized and collated as a whole image is; merged by `tiling.merge_detections` (its border rule)."""
    image = item["image"]
    height, width = image.shape[:2]
    windows = tile_windows(height, width, tile_args.tile, tile_args.tile_overlap)
    views = [{"index": item["index"], "image": image[y0:y1, x0:x1], "window": (x0, y0, x1, y1),
              "pixel_values": eval_pixels(image[y0:y1, x0:x1], augmentation)} for x0, y0, x1, y1 in windows]
    if tile_args.tile_full_frame:
        views.append({**item, "window": (0, 0, width, height)})
    parts, cuts = [], []
    for start in range(0, len(views), batch_size):
        chunk = views[start:start + batch_size]
        for view, dets in zip(chunk, detect(model, collate(chunk), device, top_k=top_k)):
            moved = shift_detections(dets, view["window"])
            parts.append(moved)
            cuts.append(cut_by_window(moved, view["window"], height, width, tile_args.tile))
    with stage("merge"):
        return merge_detections(parts, cuts, method=tile_args.tile_merge, top_k=top_k)


def check_tile_fits(model, augmentation, tile_args: TileArguments | None, *, source: str) -> None:
    """Before any image: a detector of a fixed frame (an exported graph's `frame`) must hold a resized window."""
    frame = getattr(model, "frame", None)
    if tile_args is None or not tile_args.on or frame is None:
        return
    height, width = eval_pixels(np.zeros((tile_args.tile, tile_args.tile, 3), np.uint8), augmentation).shape[-2:]
    if height > frame[0] or width > frame[1]:
        raise ConfigError(f"--tile {tile_args.tile}: a window resizes to {height}x{width} pixels, larger than the "
                          f"frame {frame[0]}x{frame[1]} of {source}; choose a smaller --tile or export again with "
                          f"--image_size {height} {width}")


def prepare_detector(args: PredictArguments):
    """-> (model on its device, processor, category ids, the evaluation resize of its processor, device)."""
    from recipe.pipeline.augment import eval_augmentation_for
    from recipe.pipeline.processor_size import rule_of

    device = pick_device(args.device)
    model, processor, category_ids = load_detector(args.model)
    augmentation = eval_augmentation_for(processor.size, rule=rule_of(processor),
                                         source=f"{args.model} (its preprocessor_config.json)")
    return model.to(device), processor, category_ids, augmentation, device


def predict(args: PredictArguments, dataset_args=None, tile_args: TileArguments | None = None) -> dict:
    """Run the model over the images (`args.images`, or the images of a split of `dataset_args.dataset`, with their
    image ids), tiled with `tile_args` (`detect_tiled`); write `output/predictions.json` and (with `draw`)
    `output/images/<name>`.

    -> {"images": read, "skipped": [unreadable names], "detections": kept, "results": path, "drawn": folder}."""
    from tqdm.auto import tqdm

    if args.batch_size < 1 or args.top_k < 1:
        raise ConfigError(f"--batch_size {args.batch_size} / --top_k {args.top_k}: both must be at least 1")
    files, names, ids = images_to_predict(args, dataset_args)
    model, processor, category_ids, augmentation, device = prepare_detector(args)
    threshold = score_threshold(args.threshold, model.config)
    label_names = {int(k): v for k, v in model.config.id2label.items()}
    collate = collate_readable(model.config, processor)
    check_tile_fits(model, augmentation, tile_args, source=args.model)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results, skipped, best_score = [], [], None
    with tqdm(total=len(files), unit="img", desc="predict") as bar:
        for item, dets in detections_per_image(model, files, augmentation, collate, device, tile_args,
                                               batch_size=args.batch_size, num_workers=args.num_workers,
                                               top_k=args.top_k):
            bar.update(1)
            i = item["index"]
            if dets is None:
                skipped.append(names[i])
                bar.write(f"skipped {item['error']}")
                continue
            with stage("postprocess"):
                if len(dets):
                    best_score = max(best_score or 0.0, float(dets[:, DET_SCORE].max()))
                kept = dets[dets[:, DET_SCORE] > threshold]
                results += results_from_detections(kept, image_id=ids[i], category_ids=category_ids,
                                                   file_name=names[i])
            if args.draw:
                with stage("draw"):
                    save_drawn(item["image"], kept, out / "images" / names[i], label_names)
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


