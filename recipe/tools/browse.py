"""See what the model sees: ground-truth boxes drawn on a sample of a dataset's images, optionally after the
training augmentation of a config (flip, crop, multi-scale resize, colour jitter), as one grid image.

Boxes are the table's (sanitized: clamped to the image, degenerate ones dropped), so the grid shows exactly what
training reads; crowd boxes are tagged "(crowd)" (the loss never sees them, COCOeval ignores detections on them).
"""

from __future__ import annotations

import json
import os

import numpy as np

from recipe.config.command_arguments import BrowseArguments
from recipe.core.draw import draw_boxes, grid, titled
from recipe.core.errors import ConfigError
from recipe.data.images import ImageError, read_image


def training_augmentation(config_path: str, seed: int, table=None, epoch: int | None = None):
    """The training augmentation that `config_path` sets up (its data fields over DataArguments' defaults), as in
    the config's epoch `epoch` (default: the first with every op of its preset on); `table`: the images that Mosaic /
    MixUp draw from."""
    import math

    from recipe.config.load import parse_config
    from recipe.pipeline import presets
    from recipe.pipeline.transforms import ImagePool

    config = parse_config([config_path])
    data = config.data
    pool = ImagePool(table) if table is not None and presets.mixes_images(data.augmentation) else None
    augmentation = presets.training_augmentation(data, epochs=math.ceil(config.training.num_train_epochs),
                                                 pool=pool, seed=seed)
    if isinstance(augmentation, presets.PresetAugmentation):
        augmentation.epoch = augmentation.phases.start if epoch is None else epoch
    elif epoch is not None:  # the deformable set is the same in every epoch: the flag would have no effect
        raise ConfigError(f"--augment_epoch {epoch}: {config_path} trains with augmentation {data.augmentation}, "
                          "which is the same in every epoch; drop --augment_epoch")
    # the augmentation draws from its own RNG, not numpy's or torch's
    return augmentation


def load_browsed(args: BrowseArguments, dataset_args=None):
    from recipe.data.source import data_source, load_table

    return load_table(data_source(dataset_args, annotation_file=args.ann, image_root=args.images,
                                  annotation_format=args.format, box_convention=args.box_convention,
                                  bdd_image_size=args.bdd_image_size, cache_dir=args.dataset_cache_dir,
                                  needs="the data to browse: --ann FILE with --images DIR"))


def browse_dataset(args: BrowseArguments, dataset_args=None) -> dict:
    """Write the grid (and `<output>.json`: per image its file, size and the boxes drawn) of `--ann`/`--images` or
    of a split of `--dataset`. -> that JSON."""
    from recipe.pipeline.color_jitter import jitter_image

    if args.augment_epoch is not None and not args.augment:
        raise ConfigError("--augment_epoch without --augment: give the config whose augmentation to draw")
    data = load_browsed(args, dataset_args)
    names = {i: c["name"] for i, c in enumerate(data.categories)}
    crowd_names = {i + len(names): f"{n} (crowd)" for i, n in names.items()}
    rng = np.random.default_rng(args.seed)
    picked = sorted(rng.choice(len(data.dataset), size=min(args.num_images, len(data.dataset)), replace=False))
    augmentation = (training_augmentation(args.augment, args.seed, data.dataset, args.augment_epoch) if args.augment
                    else None)
    cells, shown = [], []
    for row in data.dataset.select(picked):
        try:
            image = read_image(row["image_path"])
        except ImageError as e:
            print(f"skipped {e}")
            continue
        objs = row["objects"]
        boxes, labels, crowd = np.asarray(objs["bbox"]).reshape(-1, 4), list(objs["category"]), list(objs["iscrowd"])
        if augmentation is not None:
            out = augmentation(image=image, bboxes=boxes, category=labels, iscrowd=crowd)
            image, boxes, labels, crowd = out["image"], np.asarray(out["bboxes"]).reshape(-1, 4), out["category"], \
                out["iscrowd"]
            if out.get("color_jitter") is not None:  # training applies it to the batch; here, to the image
                image = jitter_image(image, out["color_jitter"])
        tags = [int(lab) + (len(names) if c else 0) for lab, c in zip(labels, crowd)]
        drawn = draw_boxes(image, boxes, tags, names={**names, **crowd_names})
        file = os.path.basename(row["image_path"])
        cells.append(titled(drawn, f"{file}  {image.shape[1]}x{image.shape[0]}"))
        shown.append({"file": file, "width": int(image.shape[1]), "height": int(image.shape[0]),
                      "boxes": [{"category": names[int(lab)], "bbox": [float(v) for v in b], "iscrowd": int(c)}
                                for b, lab, c in zip(boxes, labels, crowd)]})
    source = args.ann or f"{dataset_args.dataset} [{dataset_args.split}]"
    summary = {"annotations": source, "augment": args.augment, "seed": args.seed, "images": shown}
    if augmentation is not None and hasattr(augmentation, "phases"):
        summary["augmentation"] = {"preset": augmentation.name, "epoch": augmentation.epoch}
    if cells:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        grid(cells, columns=args.columns, cell_width=args.cell_width).save(args.output, quality=90)
        with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
            json.dump(summary, f, indent=1)
    print(f"{len(shown)} images, {sum(len(s['boxes']) for s in shown)} boxes"
          f"{' after the training augmentation of ' + args.augment if args.augment else ''} -> {args.output}")
    return summary
