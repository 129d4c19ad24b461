"""Model and image processor: pretrained (Hub id, local folder, local cache; offline-safe) or from a config."""

from __future__ import annotations

import json
import logging
import os

from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

from .errors import ModelNotAvailable
from .losses import install_float32_loss

logger = logging.getLogger(__name__)


def is_offline(model_args) -> bool:
    return bool(model_args.offline) or os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def check_model_available(model_args) -> None:
    """Fail early (before any data is read) if a pretrained model cannot be had."""
    if model_args.model_config:
        return
    if not model_args.model_name_or_path:
        raise ModelNotAvailable("set model_name_or_path (Hub id or local folder) or model_config")
    offline = is_offline(model_args)
    try:
        AutoConfig.from_pretrained(model_args.model_name_or_path, local_files_only=offline)
    except Exception as e:  # noqa: BLE001 - the hub raises many types; all mean "not here"
        where = "the local cache (offline mode)" if offline else "the Hub or the local cache"
        raise ModelNotAvailable(
            f"model {model_args.model_name_or_path!r} is not in {where} ({type(e).__name__}). Download it once "
            "where there is network (`hf download ID`), pass a local folder, or ask for random weights with "
            "--random_init (or give model_config).") from None


def _as_int(name: str, value: float) -> int:
    # transformers' config validates these as int.
    if float(value) != int(value):
        raise ValueError(f"{name} must be a whole number for this model's config, got {value}")
    return int(value)


def _overrides(model_args, id2label: dict[int, str]) -> dict:
    ints = {k: _as_int(k, getattr(model_args, k)) for k in
            ("class_cost", "bbox_cost", "giou_cost", "bbox_loss_coefficient", "giou_loss_coefficient")}
    return {**ints, "id2label": id2label, "label2id": {v: k for k, v in id2label.items()},
            "auxiliary_loss": model_args.auxiliary_loss}


def load_model_and_processor(model_args, id2label: dict[int, str]):
    """-> (model, image_processor). `id2label` comes from the data (contiguous labels 0..N-1)."""
    overrides = _overrides(model_args, id2label)
    if model_args.model_config:
        cfg = json.loads(model_args.model_config)
        model_type = cfg.pop("model_type", "deformable_detr")
        config = AutoConfig.for_model(model_type, **{**cfg, **overrides})
        model = AutoModelForObjectDetection.from_config(config)
        processor_class = IMAGE_PROCESSOR_MAPPING_NAMES[model_type]
        if isinstance(processor_class, dict):  # transformers 5: {"torchvision": ..., "pil": ...}
            processor_class = processor_class.get("torchvision") or processor_class.get("pil")
        import transformers

        processor = getattr(transformers, processor_class)()
        logger.warning("model built from model_config with random weights (%s, %.1fM parameters)",
                       model_type, sum(p.numel() for p in model.parameters()) / 1e6)
    else:
        path, offline = model_args.model_name_or_path, is_offline(model_args)
        config = AutoConfig.from_pretrained(path, local_files_only=offline, **overrides)
        if model_args.random_init:
            model = AutoModelForObjectDetection.from_config(config)
            logger.warning("*** RANDOM INITIALISATION of %s as asked (--random_init): no pretrained weights ***",
                           path)
        else:
            model = AutoModelForObjectDetection.from_pretrained(
                path, config=config, local_files_only=offline,
                ignore_mismatched_sizes=model_args.ignore_mismatched_sizes)
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=offline)
    train_stem = model_args.train_backbone_stem
    set_backbone_trainable(model, train_stem=bool(model_args.model_config or model_args.random_init)
                           if train_stem is None else train_stem)
    install_float32_loss(model, class_coefficient=model_args.class_loss_coefficient,
                         bbox_coefficient=model_args.bbox_loss_coefficient,
                         giou_coefficient=model_args.giou_loss_coefficient)
    return model, processor


def set_backbone_trainable(model, train_stem: bool) -> None:
    """Original recipe: the backbone's stem and first stage frozen, stages 2-4 trained.

    transformers freezes an HF (non-timm) ResNet backbone by matching "stage.1"-style names that its
    parameters ("encoder.stages.1...") never contain, so the whole backbone ends up frozen. Re-apply the
    intended rule; with `train_stem` (the default for random weights) the whole backbone trains.
    """
    backbone = getattr(getattr(model, "model", None), "backbone", None)
    conv_encoder = getattr(backbone, "conv_encoder", backbone)
    inner = getattr(conv_encoder, "model", None)
    if inner is None or hasattr(conv_encoder, "_backbone") or "stages" not in str(
            [n for n, _ in inner.named_parameters()][:50]):
        return
    for name, param in inner.named_parameters():
        if train_stem or any(f"stages.{i}." in name for i in (1, 2, 3)):
            param.requires_grad_(True)
