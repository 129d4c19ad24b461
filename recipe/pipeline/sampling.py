"""Repeat-factor sampling for rare classes (LVIS: Gupta et al. 2019, "LVIS: A Dataset for Large Vocabulary Instance
Segmentation", section 4; detectron2's `RepeatFactorTrainingSampler`).

Each class c has a frequency f_c, the fraction of training images holding at least one of its boxes, and a repeat
factor r_c = max(1, sqrt(t / f_c)); an image is repeated r_i = max over its classes of r_c times per epoch (an image
without boxes: 1). The fractional part is drawn per epoch, so an image with r_i = 2.3 comes twice or three times.

Differences from detectron2's sampler, each for the Trainer: the epoch's length is fixed (the Trainer counts its steps
once), so the fractional parts are drawn by systematic sampling over a shuffled order, which picks each image with
probability exactly its fractional part and a total of floor(S) or ceil(S) (S: their sum); the epoch keeps
floor(S) + the whole parts (`epoch_length`), dropping the last pick when there are ceil(S). The list is a function of
(seed, epoch) alone, read from the recipe's epoch (`transforms.AugmentationSeeds`), so a resumed run and every
process draw the same one; the Trainer (accelerate) deals its batches to the processes in turn, so each copy of an
image goes to one process. Copies of one image are moved apart so that no optimizer step (batch x processes x
gradient accumulation images) holds the same image twice (`spread_copies`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def class_frequencies(image_labels: Sequence[Sequence[int]], num_classes: int) -> list[float]:
    """-> f_c: the fraction of images with at least one box of class c (0 for a class in no image)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for labels in image_labels:
        for c in {int(x) for x in labels}:
            counts[c] += 1
    return (counts / max(1, len(image_labels))).tolist()


def class_repeat_factors(frequencies: Sequence[float], threshold: float) -> list[float]:
    """-> r_c = max(1, sqrt(threshold / f_c)); a class in no image gets 1 (no image to repeat)."""
    return [max(1.0, math.sqrt(threshold / f)) if f > 0 else 1.0 for f in frequencies]


def image_repeat_factors(image_labels: Sequence[Sequence[int]], class_factors: Sequence[float]) -> list[float]:
    """-> r_i = max over the image's classes of r_c (1 for an image without boxes)."""
    return [max((class_factors[int(c)] for c in labels), default=1.0) for labels in image_labels]


def epoch_length(factors: Sequence[float]) -> int:
    """Images in one repeat-factor epoch: the whole parts plus floor of the fractional parts' sum."""
    whole = np.floor(np.asarray(factors, dtype=np.float64))
    return int(whole.sum()) + int(math.floor(float((np.asarray(factors) - whole).sum()) + 1e-9))


def repeat_counts(factors: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """-> each image's copies this epoch: floor(r_i), plus 1 with probability frac(r_i) (systematic sampling over a
    shuffled order); the total is `epoch_length(factors)`."""
    r = np.asarray(factors, dtype=np.float64)
    whole = np.floor(r)
    frac = r - whole
    order = rng.permutation(len(r))
    cumulative = np.concatenate([[0.0], np.cumsum(frac[order])])
    offset = rng.random()
    # Points offset, offset + 1, ...: an image is picked when one falls in its stretch (cum[k], cum[k + 1]].
    picks = np.floor(cumulative[1:] - offset + 1.0) - np.floor(cumulative[:-1] - offset + 1.0)
    picks = np.clip(picks, 0, 1)
    extra = np.zeros(len(r))
    extra[order] = picks
    counts = (whole + extra).astype(np.int64)
    surplus = int(counts.sum()) - epoch_length(factors)
    if surplus > 0:  # ceil(S) picks: drop the last one in the shuffled order
        counts[order[np.nonzero(picks)[0][-1]]] -= 1
    elif surplus < 0:  # only by float rounding of the sums: the first unpicked fractional image in the order
        counts[order[np.nonzero((picks == 0) & (frac[order] > 0))[0][0]]] += 1
    return counts


def spread_copies(indices: list[int], window: int) -> list[int]:
    """Reorder `indices` so that no step (`window` consecutive places, one optimizer step) holds an index twice: a
    duplicate is swapped with the nearest later index not in its step, else (the last steps) with an earlier one
    whose own step does not hold the duplicate. Deterministic; where no swap exists (an image with more copies than
    the epoch has steps) the duplicate stays."""
    out = list(indices)
    for start in range(0, len(out), window):
        for pos in range(start, min(start + window, len(out))):
            step = out[start:pos]
            if out[pos] not in step:
                continue
            here = set(out[start:start + window])
            later = (j for j in range(start + window, len(out)) if out[j] not in here)
            earlier = (j for j in range(start) if out[j] not in here and
                       out[pos] not in out[j - j % window:j - j % window + window])
            target = next(later, None)
            target = next(earlier, None) if target is None else target
            if target is not None:
                out[pos], out[target] = out[target], out[pos]
    return out


class RepeatFactorSampler(torch.utils.data.Sampler):
    """The training sampler of `--repeat_factor_threshold`: the epoch's image indices, each repeated
    (`repeat_counts`), shuffled, copies spread over steps (`spread_copies`), from (seed, epoch) alone.

    `epoch_of` has an `epoch` attribute (`transforms.AugmentationSeeds`, set as each epoch starts)."""

    def __init__(self, factors: Sequence[float], *, seed: int, epoch_of, step_images: int):
        self.factors = list(factors)
        self.seed, self.epoch_of, self.step_images = seed, epoch_of, max(1, step_images)
        self.length = epoch_length(self.factors)

    def __len__(self) -> int:
        return self.length

    def indices(self, epoch: int) -> list[int]:
        rng = np.random.default_rng([self.seed % 2**63, int(epoch), 0x52465331])
        counts = repeat_counts(self.factors, rng)
        order = np.repeat(np.arange(len(counts)), counts)
        return spread_copies(rng.permutation(order).tolist(), self.step_images)

    def __iter__(self):
        return iter(self.indices(self.epoch_of.epoch))
