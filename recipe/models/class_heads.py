"""The checkpoint's classes against the data's, before fine-tuning: one summary line, a loud warning where the class
heads would be kept for other classes (same count, other names or order: a wrong mapping trains to mAP 0 without an
error), and `--keep_matching_heads`: the rows of the classes both name, moved to the data's label index.

Which tensors are sized by the class count is found without naming any family's modules: the same architecture is
built (on the meta device: no memory, no random draw) for another class count, and a tensor whose shape changes in
exactly one dimension is class-dependent there. Its size there is the count (sigmoid heads, encoder score heads) or
the count + 1 (a softmax head's "no object" row, a denoising class embedding's padding row: the last row, which
stays last)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from transformers import AutoModelForObjectDetection

from recipe.core.errors import ConfigError

logger = logging.getLogger(__name__)


def names_in_order(id2label: dict) -> list[str]:
    """The class names by label index (config.json keys may be strings)."""
    return [str(name) for _, name in sorted(((int(k), v) for k, v in id2label.items()))]


@dataclass(frozen=True)
class ClassMatch:
    """The checkpoint's class names and the data's, each by label index."""

    checkpoint: tuple[str, ...]
    data: tuple[str, ...]

    @property
    def shared(self) -> list[str]:
        """Names in both, in the data's order."""
        theirs = set(self.checkpoint)
        return [name for name in self.data if name in theirs]

    @property
    def rows(self) -> dict[int, int]:
        """{data label index: checkpoint label index} of every shared name."""
        index = {name: i for i, name in enumerate(self.checkpoint)}
        return {i: index[name] for i, name in enumerate(self.data) if name in index}

    @property
    def same_places(self) -> int:
        return sum(new == old for new, old in self.rows.items())

    @property
    def identical(self) -> bool:
        return self.checkpoint == self.data


def compare_classes(checkpoint: dict, data: dict, *, keep_matching: bool = False) -> ClassMatch:
    """Log how the checkpoint's classes (`config.id2label`) meet the data's: counts, names in both, whether they sit
    at the same label index; a loud warning where the same count keeps the heads for other classes."""
    match = ClassMatch(tuple(names_in_order(checkpoint)), tuple(names_in_order(data)))
    if match.identical:
        logger.info("class check: the data's %d classes are the checkpoint's, in its order: its class heads are kept",
                    len(match.data))
        return match
    shared, old_n, new_n = match.shared, len(match.checkpoint), len(match.data)
    only_ckpt = [n for n in match.checkpoint if n not in set(match.data)]
    only_data = [n for n in match.data if n not in set(match.checkpoint)]
    logger.warning("class check: the checkpoint has %d classes, the data %d; names in both: %d, at the same label "
                   "index: %d%s%s", old_n, new_n, len(shared), match.same_places,
                   f"; only the checkpoint's: {_few(only_ckpt)}" if only_ckpt else "",
                   f"; only the data's: {_few(only_data)}" if only_data else "")
    if old_n == new_n and not keep_matching:
        what = ("the same names in another order" if not only_data else
                f"other names ({len(shared)} of {new_n} shared)")
        moved = [f"{i} {match.checkpoint[i]!r} -> {name!r}" for i, name in enumerate(match.data)
                 if name != match.checkpoint[i]]
        logger.warning("*** CLASS HEADS KEPT FOR OTHER CLASSES: the data has the checkpoint's class count (%d) but %s; "
                       "each label keeps the head the checkpoint trained for its index (label %s). Pass "
                       "--keep_matching_heads to move the shared classes' rows to their labels (the others start "
                       "fresh) ***", new_n, what, _few(moved))
    elif shared and not keep_matching:
        logger.warning("class heads start fresh for all %d classes; --keep_matching_heads would keep the rows of the "
                       "%d the checkpoint knows", new_n, len(shared))
    return match


def _few(items: list, n: int = 6) -> str:
    return ", ".join(map(str, items[:n])) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def check_keep_matching(match: ClassMatch, source: str) -> None:
    """--keep_matching_heads with no name in common has nothing to keep: a one-line error."""
    if not match.shared:
        raise ConfigError(f"--keep_matching_heads: {source} shares no class name with the data (checkpoint: "
                          f"{_few(list(match.checkpoint))}; data: {_few(list(match.data))}); nothing to keep: drop "
                          "the flag to train new heads")


def class_dims(config, fresh) -> dict[str, tuple[int, int]]:
    """{tensor name: (class dimension, extra rows 0 or 1)} of `fresh` (built from `config`): the tensors whose shape
    changes in one dimension when the architecture is built for another class count."""
    probe_config = copy.deepcopy(config)
    probe_config.id2label = {i: f"probe{i}" for i in range(config.num_labels + 2)}
    probe_config.label2id = {v: k for k, v in probe_config.id2label.items()}
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        probe = AutoModelForObjectDetection.from_config(probe_config)
    other = {name: t.shape for name, t in named_tensors(probe).items()}
    dims = {}
    for name, tensor in named_tensors(fresh).items():
        theirs = other.get(name)
        if theirs is None or theirs == tensor.shape or len(theirs) != tensor.dim():
            continue
        changed = [d for d in range(tensor.dim()) if theirs[d] != tensor.shape[d]]
        extra = tensor.shape[changed[0]] - config.num_labels
        if len(changed) == 1 and extra in (0, 1):
            dims[name] = (changed[0], extra)
    return dims


def named_tensors(model) -> dict:
    """Parameters (shared ones under each name) and buffers by name."""
    return {**dict(model.named_buffers()), **dict(model.named_parameters(remove_duplicate=False))}


@torch.no_grad()
def keep_matching_rows(fresh, source: dict, *, dims: dict[str, tuple[int, int]], match: ClassMatch) -> list[str]:
    """Copy into `fresh`'s class-dependent tensors the checkpoint's rows (`source`: name -> tensor) of the shared
    classes, at the data's label index, and the extra last row to the last place; other rows keep their fresh
    initialisation. -> the tensors written (a tensor whose checkpoint shape does not fit is left fresh, and said)."""
    old_n, written, skipped = len(match.checkpoint), [], []
    targets = named_tensors(fresh)
    for name, (dim, extra) in sorted(dims.items()):
        target, src = targets[name], source.get(name)
        expected = list(target.shape)
        expected[dim] = old_n + extra
        if src is None or list(src.shape) != expected:
            skipped.append(name)
            continue
        new_rows = list(match.rows) + ([target.shape[dim] - 1] if extra else [])
        old_rows = list(match.rows.values()) + ([old_n] if extra else [])
        rows = src.detach().index_select(dim, torch.tensor(old_rows)).to(target.device, target.dtype)
        target.index_copy_(dim, torch.tensor(new_rows, device=target.device), rows)
        written.append(name)
    logger.warning("--keep_matching_heads: the checkpoint's rows of %d class(es) kept (%s) in %d tensors; fresh "
                   "rows for %s", len(match.rows), _few(match.shared), len(written),
                   _few([n for n in match.data if n not in set(match.checkpoint)]) or "none")
    if skipped:
        logger.warning("--keep_matching_heads: %d class-dependent tensors not in the checkpoint's shape, left fresh: "
                       "%s", len(skipped), _few(skipped, 4))
    return written
