"""A whole dataset named by `--dataset`: detect its format, build the table of each split, and split a validation
set off the training table when the source has none (`train_val_split`, seeded)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow.compute as pc

from recipe.core.errors import DataError
from recipe.data.builder import DetectionData, load_split
from recipe.data.formats import DatasetOptions, open_dataset


def load_dataset_splits(path_or_id: str, options: DatasetOptions | None = None, *, cache_dir: str | None = None,
                        subset: int | None = None, image_check: str = "decode", skip_bad_images: bool = False,
                        train_val_split: float = 0.15, seed: int = 42,
                        splits: tuple[str, ...] = ("train", "validation")) -> dict[str, DetectionData]:
    """{split: table} for the `splits` asked for ("train", "validation"). Without a validation split in the source,
    `train_val_split` of the training images (drawn with `seed`) become it; 0 means no validation split."""
    options = options or DatasetOptions(cache_dir=cache_dir)
    if options.cache_dir is None and cache_dir is not None:
        options = replace(options, cache_dir=cache_dir)
    opened = open_dataset(path_or_id, options)
    out = {}
    split_needed = "validation" not in opened.splits and "validation" in splits and train_val_split > 0
    for name in splits if not split_needed else ("train",):
        if name in opened.splits:
            out[name] = load_split(opened.splits[name], opened.format, cache_dir, None if split_needed else subset,
                                   image_check=image_check, skip_bad_images=skip_bad_images,
                                   class_names=options.class_names)
            out[name].report["format"] = opened.format
    if split_needed:
        out["train"], out["validation"] = split_off(out["train"], train_val_split, seed, path_or_id)
        out = {name: _first(table, subset) for name, table in out.items() if name in splits}
    return out


def _first(data: DetectionData, subset: int | None) -> DetectionData:
    if subset is not None:
        data.dataset = data.dataset.select(range(min(subset, len(data.dataset))))
    return data


def split_off(data: DetectionData, fraction: float, seed: int, source: str) -> tuple[DetectionData, DetectionData]:
    """(train, validation): round(fraction x N) images, at least 1, drawn with `seed`; both keep image-id order."""
    n = len(data.dataset)
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise DataError(f"{source}: {n} image(s) cannot be split into train and validation (train_val_split "
                        f"{fraction}); add images or give a validation split")
    picked = np.sort(np.random.default_rng(seed).permutation(n)[:n_val])
    rest = np.setdiff1d(np.arange(n), picked)
    note = {"split_off": f"validation = {n_val} of the {n} training images (train_val_split {fraction}, seed {seed})"}
    # Straight from Arrow: boxes per image of the whole table, then summed per part.
    boxes = pc.list_value_length(data.dataset.data.column("objects").combine_chunks().field("id")).to_numpy()
    train = DetectionData(data.dataset.select(rest), data.categories, {
        **data.report, "images": len(rest), "boxes_kept": int(boxes[rest].sum()), **note}, data.from_cache)
    val = DetectionData(data.dataset.select(picked), data.categories,
                        {"images": n_val, "boxes_kept": int(boxes[picked].sum()), **note}, data.from_cache)
    return train, val
