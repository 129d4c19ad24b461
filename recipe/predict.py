"""Run a detector on new images: drawn images, a results file (COCO results or BDD100K frames), a progress bar.

Pre- and post-processing are the evaluation's: the image reader of training, the eval resize
(`transforms.eval_augmentation_for` the size in the folder's preprocessor_config.json), `DetectionCollator`'s
normalisation (the image processor's values, once per batch), padding and pixel mask, `postprocess_detections`
(top-k over queries x classes, boxes `xywh_abs` in the original image), labels mapped to the dataset's category
ids (config.json `category_ids`, saved by training; a checkpoint without it, e.g. a published COCO one, uses its
label ids).
"""

from __future__ import annotations

import glob
import inspect
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, DataError, ModelNotAvailable
from .postprocess import DET_BOX, DET_LABEL, DET_SCORE
from .timing import stage

logger = logging.getLogger("recipe")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


DEFAULT_THRESHOLD = 0.3


@dataclass
class PredictArguments:
    model: str = field(metadata={"help": "A trained output folder, a checkpoint folder, a Hub id (any "
                                         "AutoModelForObjectDetection with its image processor), or an .onnx "
                                         "file written by detr-export (run with ONNX Runtime)."})
    images: str | None = field(default=None, metadata={
        "help": "An image file, a folder (its image files, sorted) or a glob pattern (or --dataset and --split)."})
    threshold: float | None = field(default=None, metadata={
        "help": "Keep detections scoring above this (0 keeps the top_k of every image: the COCO protocol). "
                "Default: the model's `suggested_threshold` (best F1 on its validation set, written by training), "
                f"else {DEFAULT_THRESHOLD}."})
    output: str = field(default="predictions", metadata={
        "help": "Output folder: predictions.json and the drawn images under images/."})
    format: str = field(default="coco", metadata={
        "help": "predictions.json as COCO results (with file_name) or a BDD100K frame list.",
        "choices": ["coco", "bdd100k"]})
    batch_size: int = field(default=8, metadata={"help": "Images per forward pass."})
    device: str = field(default="auto", metadata={"help": "auto (cuda, else mps, else cpu), cpu, cuda, cuda:1, ..."})
    top_k: int = field(default=100, metadata={"help": "Detections kept per image before the threshold (COCO: 100)."})
    draw: bool = field(default=True, metadata={"help": "Write the images with their boxes drawn."})
    num_workers: int = field(default=0, metadata={"help": "Image decoding worker processes."})
    dataset_cache_dir: str | None = field(default=None, metadata={
        "help": "With --dataset: the Arrow cache folder of its tables (default: the datasets cache)."})
    box_convention: str = field(default="inclusive", metadata={
        "help": "--format bdd100k: box2d inclusive (x2 = x + w - 1, current toolkit) or exclusive.",
        "choices": ["inclusive", "exclusive"]})


def list_images(spec: str) -> list[Path]:
    """An image file, a folder (its files with an image suffix, sorted, not recursive) or a glob (sorted)."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    else:
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True)
                       if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())
    if not files:
        raise DataError(f"{spec}: no images found (suffixes {', '.join(IMAGE_SUFFIXES)})")
    return files


def relative_names(files: list[Path]) -> list[str]:
    """Names relative to the files' common folder (unique where base names repeat across folders)."""
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    return [f.resolve().relative_to(root).as_posix() for f in files]


def image_ids_for(names: list[str]) -> list[int]:
    """COCO's own convention where every file stem is a distinct number (000000397133.jpg -> 397133), else
    1..N in file order. The results file also carries each file name."""
    stems = [Path(n).stem for n in names]
    if all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(names) + 1))


def pick_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_detector(model_id: str):
    """-> (model in eval mode, image processor, label -> dataset category id list). An exported `.onnx` file gives
    an ONNX Runtime detector with the same call (`export.OnnxDetector`)."""
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    from .onnx_detector import is_onnx, load_onnx_detector

    if is_onnx(model_id):
        return load_onnx_detector(model_id)
    try:
        model = AutoModelForObjectDetection.from_pretrained(model_id)
    except (OSError, ValueError) as e:
        raise ModelNotAvailable(f"{model_id}: cannot load a detector ({str(e).splitlines()[0]}); pass a trained "
                                "output folder, a checkpoint folder or a cached Hub id") from None
    processor = None
    # A Trainer checkpoint-<step> folder may lack the processor; its run's output folder has it.
    for source in (model_id, str(Path(model_id).parent)):
        try:
            processor = AutoImageProcessor.from_pretrained(source)
            break
        except (OSError, ValueError):
            continue
    if processor is None:
        raise ModelNotAvailable(f"{model_id}: no preprocessor_config.json (the image processor); save the model "
                                "with its processor (training does) or copy the file beside config.json")
    num_labels = len(model.config.id2label)
    category_ids = getattr(model.config, "category_ids", None) or list(range(num_labels))
    if len(category_ids) != num_labels:
        raise ModelNotAvailable(f"{model_id}/config.json: category_ids has {len(category_ids)} entries for "
                                f"{num_labels} labels; fix or delete it")
    return model.eval(), processor, [int(c) for c in category_ids]


class ImageFiles(torch.utils.data.Dataset):
    """Each item: {"index", "image" (uint8 [H, W, 3], as training reads it), "pixel_values" uint8 [3, h, w]
    (resized)} or {"index", "error"} for a file that cannot be read (reported by name, then skipped)."""

    def __init__(self, files: list[Path], augmentation):
        self.files, self.augmentation = files, augmentation

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        from .data.images import ImageError, read_image

        try:
            with stage("decode"):
                image = read_image(str(self.files[i]))
        except ImageError as e:
            return {"index": i, "error": str(e)}
        with stage("augment"):
            out = self.augmentation(image=image, bboxes=np.zeros((0, 4)), category=[], iscrowd=[])
        # uint8, as in training and evaluation: the collator normalises the whole batch at once.
        return {"index": i, "image": image, "pixel_values": torch.from_numpy(out["image"]).permute(2, 0, 1)}


def collate_readable(config, processor):
    """Batches of the readable items: the training collator's padding and mask (`families.collator_for` the
    model's config, the processor's `pad_size`); failed items listed apart."""
    from .families import collator_for
    from .processor_size import canvas_of

    collator = collator_for(config, processor, pad_size=canvas_of(processor))

    def collate(items: list[dict]) -> dict:
        ok = [it for it in items if "error" not in it]
        batch = {"failed": [it for it in items if "error" in it], "items": ok}
        if ok:
            batch.update(collator([{"pixel_values": it["pixel_values"],
                                    "labels": {"orig_size": torch.tensor(it["image"].shape[:2])}} for it in ok]))
        return batch

    return collate


@torch.inference_mode()
def detect(model, batch: dict, device: torch.device, *, top_k: int) -> np.ndarray:
    """-> detections [B, K, 6] (score, label, xywh_abs in each original image)."""
    from .boxes import frame_sizes
    from .families import uses_softmax
    from .postprocess import postprocess_detections

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
    from .processor_size import rule_of
    from .transforms import eval_augmentation_for

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
                        results += coco_results(kept, image_id=ids[i], file_name=names[i],
                                                category_ids=category_ids)
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


def images_to_predict(args: PredictArguments, dataset_args=None) -> tuple[list[Path], list[str], list[int]]:
    """-> (files, names relative to their common folder, image ids): of `--images`, or of `--dataset`'s split (its
    table's image ids, so that the results file scores against that split)."""
    dataset = getattr(dataset_args, "dataset", None)
    if bool(dataset) == bool(args.images):
        raise ConfigError("give the images to predict on: --images PATH_OR_GLOB or --dataset (and --split), one of "
                          "them")
    if not dataset:
        files = list_images(args.images)
        names = relative_names(files)
        return files, names, image_ids_for(names)
    from .data.splits import load_one

    table = load_one(dataset_args, dataset_args.split, cache_dir=args.dataset_cache_dir,
                     image_check="exists").dataset.with_format(None)
    files = [Path(p) for p in table["image_path"]]
    return files, relative_names(files), list(table["image_id"])


def coco_results(dets: np.ndarray, *, image_id: int, file_name: str, category_ids: list[int]) -> list[dict]:
    """Kept detections [K, 6] of one image -> COCO results entries (full float precision, so that scoring the
    file gives the evaluation's numbers) with the image's file name."""
    return [{"image_id": image_id, "file_name": file_name, "category_id": category_ids[int(d[DET_LABEL])],
             "bbox": [float(v) for v in d[DET_BOX]], "score": float(d[DET_SCORE])} for d in dets]


def save_drawn(image: np.ndarray, dets: np.ndarray, path: Path, label_names: dict[int, str]) -> None:
    from .draw import draw_boxes

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
    from .data.results import payload

    path = out / "predictions.json"
    path.write_text(json.dumps(payload(fmt, results, names=names, category_names=category_names,
                                       box_convention=box_convention)))
    return path


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


def image_ids_by_file_name(results: list[dict], gt: dict, *, source: str = "results") -> list[dict]:
    """COCO results that carry `file_name` (as predict.py writes them) -> the same entries with the ground
    truth's image ids, matched by file name (base names where the paths differ)."""
    by_name = {img["file_name"]: img["id"] for img in gt.get("images", []) if "file_name" in img}
    by_base = {os.path.basename(n): i for n, i in by_name.items()}
    out = []
    for n, r in enumerate(results, start=1):
        name = r["file_name"]
        image_id = by_name.get(name, by_base.get(os.path.basename(name)))
        if image_id is None:
            raise DataError(f"{source}: result #{n} is for {name}, which is not an image of the ground truth; "
                            "predict on the ground truth's images only")
        out.append({**r, "image_id": image_id})
    return out
