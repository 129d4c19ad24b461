"""The images predict runs on: an image file, a folder or a glob (`--images`), or a split of `--dataset` with its
image ids; read as training reads them, resized as the evaluation does, and batched by the training collator."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import torch

from recipe.core.errors import ConfigError, DataError
from recipe.core.stage_timer import stage
from recipe.data.images import IMAGE_SUFFIXES


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


class ImageFiles(torch.utils.data.Dataset):
    """Each item: {"index", "image" (uint8 [H, W, 3], as training reads it), "pixel_values" uint8 [3, h, w]
    (resized)} or {"index", "error"} for a file that cannot be read (reported by name, then skipped)."""

    def __init__(self, files: list[Path], augmentation):
        self.files, self.augmentation = files, augmentation

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        from recipe.data.images import ImageError, read_image

        try:
            with stage("decode"):
                image = read_image(str(self.files[i]))
        except ImageError as e:
            return {"index": i, "error": str(e)}
        return {"index": i, "image": image, "pixel_values": eval_pixels(image, self.augmentation)}


def eval_pixels(image: np.ndarray, augmentation) -> torch.Tensor:
    """uint8 [H, W, 3] -> uint8 [3, h, w], resized by the evaluation's `augmentation`. uint8, as in training and
    evaluation: the collator normalises the whole batch at once."""
    with stage("augment"):
        out = augmentation(image=image, bboxes=np.zeros((0, 4)), category=[], iscrowd=[])
    return torch.from_numpy(out["image"]).permute(2, 0, 1)


def collate_readable(config, processor):
    """Batches of the readable items: the training collator's padding and mask (`families.collator_for` the
    model's config, the processor's `pad_size`); failed items listed apart."""
    from recipe.models.families import collator_for
    from recipe.pipeline.processor_size import canvas_of

    collator = collator_for(config, processor, pad_size=canvas_of(processor))

    def collate(items: list[dict]) -> dict:
        ok = [it for it in items if "error" not in it]
        batch = {"failed": [it for it in items if "error" in it], "items": ok}
        if ok:
            batch.update(collator([{"pixel_values": it["pixel_values"],
                                    "labels": {"orig_size": torch.tensor(it["image"].shape[:2])}} for it in ok]))
        return batch

    return collate


def images_to_predict(args, dataset_args=None) -> tuple[list[Path], list[str], list[int]]:
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
    from recipe.data.source import data_source, load_table

    source = data_source(dataset_args, box_convention=args.box_convention, cache_dir=args.dataset_cache_dir)
    table = load_table(source, image_check="exists").dataset.with_format(None)
    files = [Path(p) for p in table["image_path"]]
    return files, relative_names(files), list(table["image_id"])
