"""Named training augmentations, one per family's original recipe (`augmentation:` in a config), and the one place
that builds a run's training augmentation from its data arguments (training and browse_dataset both call it).

- deformable: the recipe's own set (augment.DetectionAugmentation): flip, multi-scale resize, optional bbox-safe crop
  (crop_prob), mild colour jitter (color_jitter_prob); the final `no_aug_epochs` at the evaluation resize only.
- rtdetr (RT-DETR, RT-DETRv2, D-FINE): RandomPhotometricDistort (p 0.5), RandomZoomOut (fill 0, p 0.5),
  RandomIoUCrop (p 0.8), SanitizeBoundingBoxes (min_size 1), flip, square multi-scale resize, Sanitize; the first
  three and the multi-scale stop at stop_epoch = epochs - no_aug_epochs (lyuwenyu/RT-DETR
  rtdetrv2_pytorch/configs/rtdetrv2/include/dataloader.yml, Peterande/D-FINE configs/dfine/include/dataloader.yml).
- deim (DEIM, DEIMv2): rtdetr's ops after a first phase without them (epochs [0, 4)), plus Mosaic (p 0.5; output
  size eval_size / 2, RandomAffine 10 degrees, translate 0.1, scale 0.5-1.5, fill 0; zoom-out and IoU crop skipped
  on a mosaic) and MixUp (p 0.5, beta 0.45-0.55) in epochs [4, 4 + stop_epoch // 2)
  (Intellindust-AI-Lab/DEIM configs/base/deim.yml: policy epoch [4, 29, 50], mosaic_prob 0.5, mixup_prob 0.5,
  mixup_epochs [4, 29]; the first phase is scaled down to round(4 * stop_epoch / 50) in runs shorter than 50
  epochs). Differences, by design: MixUp blends each image with another image of the dataset augmented the same
  way (the original rolls the batch; the partner is drawn from the image's own seeded stream, so a resumed run
  mixes the same pairs), and the loss does not weight the mixed boxes by beta (transformers' DEIM loss has no such
  input). DEIMv2's CopyBlend is not here.
- rfdetr (RF-DETR, LW-DETR): flip, then with p 0.5 either the square multi-scale resize or DETR's resize to a
  shortest edge of 400/500/600, RandomSizeCrop(384, 600), square multi-scale resize; no colour augmentation
  (roboflow/rf-detr rfdetr/datasets/coco.py make_coco_transforms_square_div_64).

With rtdetr, deim and rfdetr the final `no_aug_epochs` keep the flip and resize to the evaluation size (the
originals' stop_epoch); crop_prob and color_jitter_prob belong to deformable (a config error elsewhere).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from recipe.core.boxes import xywh_abs_to_xyxy_abs, xyxy_abs_to_xywh_abs
from recipe.pipeline import original_ops as ops
from recipe.pipeline.augment import DetectionAugmentation, build_augmentation, reseed


@dataclass(frozen=True)
class Preset:
    photometric_p: float = 0.0   # RandomPhotometricDistort's p (per op); 0 = off
    zoom_out_p: float = 0.0
    iou_crop_p: float = 0.0
    mosaic_p: float = 0.0
    mixup_p: float = 0.0
    first_phase: int = 0         # epochs before the policy ops start (DEIM: 4 of 50)
    size_crop_p: float = 0.0     # DETR's RandomSelect: probability of the resize-crop-resize branch


PRESETS = {
    "deformable": None,  # augment.DetectionAugmentation
    "rtdetr": Preset(photometric_p=0.5, zoom_out_p=0.5, iou_crop_p=0.8),
    "deim": Preset(photometric_p=0.5, zoom_out_p=0.5, iou_crop_p=0.8, mosaic_p=0.5, mixup_p=0.5, first_phase=4),
    "rfdetr": Preset(size_crop_p=0.5),
}
# DETR's resize-crop branch (absolute pixels, as the originals at every resolution)
SIZE_CROP_SIDES, SIZE_CROP_RANGE = (400, 500, 600), (384, 600)


def mixes_images(name: str) -> bool:
    """Whether preset `name` reads other images of the dataset (Mosaic, MixUp): it then needs a pool."""
    return PRESETS[name] is not None and (PRESETS[name].mosaic_p > 0 or PRESETS[name].mixup_p > 0)


@dataclass(frozen=True)
class Phases:
    """Epoch boundaries of a preset in one run: ops on in [start, stop), Mosaic / MixUp in [start, mix_end), the
    final phase (flip and the evaluation size) from stop on."""

    start: int
    mix_end: int
    stop: float

    @classmethod
    def of(cls, preset: Preset, epochs: int | None, no_aug_epochs: int = 0) -> Phases:
        stop = float("inf") if epochs is None else epochs - no_aug_epochs
        start = preset.first_phase if epochs is None or stop >= 50 else min(preset.first_phase,
                                                                             round(preset.first_phase * stop / 50))
        mix_end = float("inf") if epochs is None else start + int(stop) // 2
        return cls(start, mix_end, stop)


class PresetAugmentation:
    """One original preset on one image: the same call as DetectionAugmentation (`aug(image=uint8 [H, W, 3],
    bboxes=xywh_abs [N, 4], category=[N], iscrowd=[N])` -> the same keys, `color_jitter` None), drawing from its own
    random state (reseeded per image and epoch by `transforms.DetectionTransform`, so a resumed run draws the same).

    `epoch_of`: an object with `.epoch` (transforms.AugmentationSeeds, in shared memory for the loader's workers);
    None: `self.epoch`. `pool` (Mosaic / MixUp): the training images, `len(pool)` and `pool.load(index) ->
    original_ops.Sample` (transforms.ImagePool)."""

    defers_pixels = False

    def __init__(self, name: str, *, resize: str, sides, longest_edge: int, eval_size: int, hflip_prob: float = 0.5,
                 epochs: int | None = None, no_aug_epochs: int = 0, epoch_of=None, pool=None):
        if name not in PRESETS or PRESETS[name] is None:
            raise ValueError(f"no original preset {name!r}; presets: {', '.join(p for p in PRESETS if PRESETS[p])}")
        self.name, self.preset = name, PRESETS[name]
        self.resize, self.sides, self.longest_edge, self.eval_size = resize, list(sides), longest_edge, eval_size
        self.hflip_prob, self.epoch_of, self.pool, self.epoch = hflip_prob, epoch_of, pool, 0
        self.phases = Phases.of(self.preset, epochs, no_aug_epochs)
        self.set_random_state(np.random.default_rng(), random.Random())

    def set_random_state(self, random_generator: np.random.Generator, py_random: random.Random) -> None:
        self.random_generator, self.py_random = random_generator, py_random

    def set_random_seed(self, seed: int) -> None:
        reseed(self, seed)

    def current_epoch(self) -> int:
        return self.epoch_of.epoch if self.epoch_of is not None else self.epoch

    def __call__(self, *, image: np.ndarray, bboxes, category, iscrowd) -> dict[str, Any]:
        out = self.augment(ops.Sample(image, xywh_abs_to_xyxy_abs(bboxes), category, iscrowd), self.current_epoch())
        return {"image": out.image, "bboxes": xyxy_abs_to_xywh_abs(out.boxes),
                "category": out.category.tolist(), "iscrowd": out.iscrowd.tolist(), "color_jitter": None}

    def _happens(self, p: float) -> bool:
        return p > 0 and self.py_random.random() < p

    def _output_hw(self, sample: ops.Sample, final: bool) -> tuple[int, int]:
        side = self.eval_size if final else self.py_random.choice(self.sides)
        return (side, side) if self.resize == "square" else ops.shortest_edge_hw(*sample.hw, side, self.longest_edge)

    def augment(self, s: ops.Sample, epoch: int, *, partner: bool = False,
                size: tuple[int, int] | None = None) -> ops.Sample:
        """`s` through the preset in `epoch`. `partner`: MixUp's second image (no Mosaic, no MixUp), resized to
        `size`."""
        p, ph, rnd = self.preset, self.phases, self.py_random
        policy, final, mixing = ph.start <= epoch < ph.stop, epoch >= ph.stop, ph.start <= epoch < ph.mix_end
        with_mosaic = policy and mixing and not partner and p.mosaic_p > 0 and rnd.random() <= p.mosaic_p
        if with_mosaic:
            others = [self._load(rnd.randrange(len(self.pool))) for _ in range(3)]
            s = ops.mosaic([s, *others], max(1, self.eval_size // 2))
            s = ops.affine(s, *ops.draw_affine(rnd, *s.hw))
        if policy and p.photometric_p > 0:
            s = ops.Sample(ops.photometric_distort(s.image, ops.draw_photometric(rnd, p.photometric_p)), s.boxes,
                           s.category, s.iscrowd)
        if policy and not with_mosaic:
            if self._happens(p.zoom_out_p):
                s = ops.zoom_out(s, *ops.draw_zoom_out(rnd, *s.hw))
            if self._happens(p.iou_crop_p):
                window = ops.draw_iou_crop(rnd, *s.hw, s.boxes)
                if window is not None:
                    s = ops.crop(s, *window)
        s = ops.sanitize(s)
        if self._happens(self.hflip_prob):
            s = ops.hflip(s)
        if not final and p.size_crop_p > 0 and rnd.random() >= 1 - p.size_crop_p:
            s = ops.resize(s, *ops.shortest_edge_hw(*s.hw, rnd.choice(SIZE_CROP_SIDES)))
            s = ops.size_crop(s, *ops.draw_size_crop(rnd, *s.hw, *SIZE_CROP_RANGE))
        s = ops.sanitize(ops.resize(s, *(size or self._output_hw(s, final))))
        if policy and mixing and not partner and self._happens(p.mixup_p):
            other = self.augment(self._load(rnd.randrange(len(self.pool))), epoch, partner=True, size=s.hw)
            s = ops.mixup(s, other, ops.draw_mixup_beta(rnd))
        return s

    def _load(self, index: int) -> ops.Sample:
        if self.pool is None:
            raise ValueError(f"augmentation {self.name!r} mixes images of the dataset: give it a pool")
        return self.pool.load(index)


def training_augmentation(data_args, *, epochs: int | None = None, no_aug_epochs: int | None = None, epoch_of=None,
                          pool=None, seed: int | None = None) -> DetectionAugmentation | PresetAugmentation:
    """The training augmentation that `data_args` (DataArguments) ask for: its `augmentation` preset at its sizes.
    `epochs` (the run's) and `no_aug_epochs` (default: data_args') place the presets' phases (the deformable
    set's final phase is `transforms.DetectionTransform`'s `plain`); `epoch_of` and `pool` as in
    PresetAugmentation."""
    sizes = dict(shortest_edges=data_args.shortest_edges, longest_edge=data_args.longest_edge,
                 eval_size=data_args.eval_size, resize=data_args.resize)
    if PRESETS[data_args.augmentation] is None:
        return build_augmentation(True, hflip_prob=data_args.hflip_prob, crop_prob=data_args.crop_prob,
                                  color_jitter_prob=data_args.color_jitter_prob, seed=seed, **sizes)
    augmentation = PresetAugmentation(data_args.augmentation, resize=data_args.resize,
                                      sides=data_args.shortest_edges, longest_edge=data_args.longest_edge,
                                      eval_size=data_args.eval_size, hflip_prob=data_args.hflip_prob, epochs=epochs,
                                      no_aug_epochs=data_args.no_aug_epochs if no_aug_epochs is None else no_aug_epochs,
                                      epoch_of=epoch_of, pool=pool)
    if seed is not None:
        augmentation.set_random_seed(seed)
    return augmentation
