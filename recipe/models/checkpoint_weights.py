"""A checkpoint's weights into a model: every key matched or an error, class heads re-initialised for another class
count (`rehead`), in-place loading that keeps parameter identity (`load_checkpoint_weights`)."""

from __future__ import annotations

import copy
import logging
import os

import torch
from transformers import AutoModelForObjectDetection

from recipe.core.errors import ModelNotAvailable
from recipe.models.class_heads import (
    check_keep_matching,
    class_dims,
    compare_classes,
    keep_matching_rows,
    named_tensors,
)

logger = logging.getLogger(__name__)


CHECKPOINT_ADVICE = "Is it a checkpoint of this architecture and transformers version?"


def check_loading_info(info: dict, path: str, *, advice: str = CHECKPOINT_ADVICE) -> None:
    """Missing, unexpected or mismatched keys mean weights silently left at random: an error here."""
    problems = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    # A checkpoint saved with frozen batch norms has no `num_batches_tracked` counters; a model that trains its norms
    # (`train_backbone_norms`) has them. The counter is read only with momentum=None, which nothing here sets.
    problems["missing_keys"] = [k for k in problems["missing_keys"] if not str(k).endswith("num_batches_tracked")]
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        detail = "; ".join(f"{k}: {len(v)} (e.g. {[str(x) for x in v[:3]]})" for k, v in problems.items())
        raise ModelNotAvailable(f"{path}: the checkpoint does not match the model ({detail}); weights would be "
                                f"left at random. {advice}")


def load_checkpoint_weights(model, folder: str) -> None:
    """Copy the weights saved in `folder` (save_pretrained, a Trainer checkpoint) into `model`, in place:
    parameters keep their identity (an optimizer's references and tied weights stay valid).

    Read through `from_pretrained`, which maps the saved key names to the model's. transformers 5 saves legacy
    names (`model.backbone.conv_encoder.model.*`, `fc1`) that the live model spells `model.backbone.model.*`,
    `mlp.fc1`; the Trainer's own resume reads the raw file with `load_state_dict(strict=False)` and leaves those
    weights at random with one warning (transformers #43701, #40187). Any key that does not match is an error."""
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    if not any(os.path.isfile(os.path.join(folder, name)) for name in weights):
        raise ModelNotAvailable(f"{folder}: no model weights there (model.safetensors); give a checkpoint-<step> "
                                "folder written by the Trainer, or --resume_from_checkpoint last")
    advice = "Load it with the model config and transformers version it was written with."
    # Building the copy must not move torch's random stream (a resumed run restores it after loading).
    with torch.random.fork_rng(devices=[]):
        loaded, info = type(model).from_pretrained(folder, config=model.config, output_loading_info=True)
    check_loading_info(info, folder, advice=advice)
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    check_loading_info({"missing_keys": result.missing_keys, "unexpected_keys": result.unexpected_keys},
                       folder, advice=advice)


def rehead(model, id2label: dict[int, str], *, keep_matching: bool = False, source: str = "the checkpoint"):
    """The same model for the classes `id2label`: every parameter and buffer whose shape does not depend on
    the class count keeps the checkpoint's value; the class-dependent ones (class heads, the softmax
    "no object" row, encoder score heads, denoising class embeddings) are freshly initialised. Weight
    sharing follows the checkpoint: heads shared there stay shared, distinct ones (box refine) stay distinct.
    The checkpoint's classes are compared with the data's first (`class_heads.compare_classes`, logged).

    Same class count: nothing is re-initialised (only the names change; a loud warning when they are other names
    or another order). `keep_matching` (--keep_matching_heads): the class-dependent tensors start fresh whatever
    the count, then get the checkpoint's rows of the classes both name, at the data's label index
    (`class_heads.keep_matching_rows`). Building a fresh model and copying avoids
    `from_pretrained(ignore_mismatched_sizes=True)`, which crashes on tied heads or leaves them on the meta device
    (transformers 5.23-5.24)."""
    match = compare_classes(model.config.id2label, id2label, keep_matching=keep_matching)
    if keep_matching:
        check_keep_matching(match, source)
    label2id = {v: k for k, v in id2label.items()}
    if match.identical or (len(id2label) == model.config.num_labels and not keep_matching):
        model.config.id2label, model.config.label2id = id2label, label2id
        return model
    config = copy.deepcopy(model.config)
    config.id2label, config.label2id = id2label, label2id
    fresh = AutoModelForObjectDetection.from_config(no_backbone_download(config))
    dims = class_dims(config, fresh) if keep_matching else {}
    source_tensors = named_tensors(model)
    reinitialised = _copy_parameters(fresh, source_tensors, fresh_names=set(dims))
    for name, buffer in fresh.named_buffers():
        theirs = source_tensors.get(name)
        if theirs is not None and theirs.shape == buffer.shape and name not in dims:
            buffer.copy_(theirs)
    logger.warning("new classification heads for %d classes (checkpoint: %d): re-initialised %d tensors %s",
                   len(id2label), model.config.num_labels, len(reinitialised), _short(reinitialised))
    if keep_matching:
        keep_matching_rows(fresh, source_tensors, dims=dims, match=match)
    fresh.reinitialised_keys = reinitialised
    return fresh


@torch.no_grad()
def _copy_parameters(fresh, source: dict, *, fresh_names=frozenset()) -> list[str]:
    """Give `fresh` the source's parameter values and sharing; a name whose shape differs, or in `fresh_names`, keeps
    fresh's initialisation (shared where the source's was). -> the re-initialised names."""
    groups: dict = {}
    for name, param in fresh.named_parameters(remove_duplicate=False):
        src = source.get(name)
        keep = src is not None and src.shape == param.shape and name not in fresh_names
        key = ("src", src.data_ptr()) if src is not None else ("fresh", param.data_ptr())
        groups.setdefault(key, []).append((name, src if keep else param, keep))
    reinitialised = []
    for members in groups.values():
        shared = torch.nn.Parameter(members[0][1].detach().clone(), requires_grad=True)
        for name, _, keep in members:
            module_name, _, attr = name.rpartition(".")
            setattr(fresh.get_submodule(module_name), attr, shared)
            if not keep:
                reinitialised.append(name)
    return sorted(reinitialised)


def _short(keys: list[str], n: int = 4) -> str:
    return str(sorted(keys)[:n])[:-1] + (", ...]" if len(keys) > n else "]")


def no_backbone_download(config):
    """from_config must not fetch backbone weights (offline machines); the checkpoint supplies them."""
    for cfg in (config, getattr(config, "backbone_config", None)):
        if cfg is not None and getattr(cfg, "use_pretrained_backbone", False):
            cfg.use_pretrained_backbone = False
    return config
