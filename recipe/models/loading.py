"""The one model loader of training, evaluation, prediction and export: model + image processor, pretrained (Hub id,
local folder, local cache; offline-safe), built from a config, or an exported ONNX graph; then, for training, the
family's config values, backbone freezing and loss."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

from recipe.config.model_config import DEFAULT_MODEL_TYPE, parse_model_config
from recipe.core.errors import ConfigError, ModelNotAvailable
from recipe.models.checkpoint_weights import check_loading_info, no_backbone_download, rehead
from recipe.models.exported import ExportedDetector, is_exported, load_exported_detector
from recipe.models.families import (
    Family,
    config_overrides,
    family_of,
    loss_weights,
    trains_backbone_norms,
    trains_whole_backbone,
)
from recipe.models.losses import install_recipe_loss
from recipe.models.random_init import init_random_weights
from recipe.models.sources import is_offline

logger = logging.getLogger(__name__)


def load_model(name: str | None, *, model_args=None, id2label: dict[int, str] | None = None):
    """-> (model, image processor): the one loader behind `load_model_and_processor` (training), evaluation,
    `load_detector` (predict and export).

    `name`: a Hub id, a local or checkpoint-<step> folder (its processor may sit in the folder above, the run's
    output folder), or an .onnx file written by detr-export (ONNX Runtime in the model's place). Without `id2label`
    the saved model comes as it is: its config, its classes. Training gives its `model_args` and the data's classes
    `id2label` (contiguous labels 0..N-1): a `model_config` builds random weights (`name` unused), a checkpoint gets
    the family's original-recipe config values with the user's overrides, its classes compared with the data's
    (logged), and new class heads only where the class count differs or `--keep_matching_heads` moves rows
    (`rehead`). No loss is installed here (`add_recipe_loss`)."""
    if model_args is not None and model_args.model_config:
        return _from_model_config(model_args, id2label)
    if is_exported(name):
        model, processor, _ = load_exported_detector(name)
        return model, processor
    return _from_checkpoint(name, model_args, id2label)


def load_detector(model_id: str):
    """-> (model in eval mode, image processor, label -> dataset category id list) for inference (predict, export):
    `load_model` (also an exported `.onnx` file, run by ONNX Runtime with the same call) without a loss, which
    inference never computes."""
    model, processor = load_model(model_id)
    return model.eval(), processor, category_ids_of(model.config, model_id)


def load_model_and_processor(model_args, id2label: dict[int, str]):
    """Training's model: `load_model` for the data's classes `id2label`, then the family's backbone freezing and its
    loss weighted as the original recipe (with the user's coefficients). -> (model, image_processor)."""
    model, processor = load_model(model_args.model_name_or_path, model_args=model_args, id2label=id2label)
    family = family_of(model.config.model_type)
    train_stem = model_args.train_backbone_stem
    if train_stem is None:
        train_stem = bool(model_args.model_config or model_args.random_init)
    set_backbone_trainable(model, family, train_stem=train_stem or trains_whole_backbone(model.config))
    add_recipe_loss(model, model_args)
    return model, processor


def add_recipe_loss(model, model_args=None) -> None:
    """The family's loss (`losses.install_recipe_loss`), its weights the original recipe's, or with `model_args` the
    user's coefficients; an exported graph computes no loss."""
    if isinstance(model, ExportedDetector):
        return
    family = family_of(model.config.model_type)
    install_recipe_loss(model, family, loss_weights(family, model_args))


def category_ids_of(config, source: str) -> list[int]:
    """Label -> dataset category id (config.json `category_ids`, saved by training; else the label ids)."""
    num_labels = len(config.id2label)
    category_ids = getattr(config, "category_ids", None) or list(range(num_labels))
    if len(category_ids) != num_labels:
        raise ModelNotAvailable(f"{source}/config.json: category_ids has {len(category_ids)} entries for "
                                f"{num_labels} labels; fix or delete it")
    return [int(c) for c in category_ids]


def _as_config_value(name: str, value, default):
    # DETR-like configs type their matcher costs as int; keep that where the value is whole.
    if isinstance(default, int) and not isinstance(default, bool):
        if float(value) != int(value):
            raise ConfigError(f"{name}={value}: this model's config takes a whole number")
        return int(value)
    return value


def recipe_config_values(model_args, family: Family, id2label: dict[int, str], config=None) -> dict:
    """Config values the recipe sets: the family's original recipe, user overrides, the data's classes."""
    values = config_overrides(family, model_args)
    if config is not None:
        values = {k: _as_config_value(k, v, getattr(config, k, None)) for k, v in values.items()}
    return {**values, "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def _from_model_config(model_args, id2label):
    cfg = dict(parse_model_config(model_args.model_config))
    model_type = cfg.pop("model_type", DEFAULT_MODEL_TYPE)
    family = family_of(model_type)
    base = AutoConfig.for_model(model_type, **cfg)
    config = AutoConfig.for_model(model_type, **{**cfg, **recipe_config_values(model_args, family, id2label, base)})
    train_backbone_norms(config, random_weights=True)
    model = AutoModelForObjectDetection.from_config(no_backbone_download(config))
    init_random_weights(model, family)
    import transformers

    processor = getattr(transformers, family.processor_class)()
    logger.warning("model built from model_config with random weights (%s, %.1fM parameters)",
                   model_type, sum(p.numel() for p in model.parameters()) / 1e6)
    return model, processor


def _from_checkpoint(path: str, model_args, id2label):
    """A saved or published model; with `id2label` (training) reconfigured for the data (see `load_model`)."""
    offline = is_offline(model_args)
    config = _pretrained(AutoConfig, path, offline)
    family = family_of(config.model_type)
    labels = None
    if id2label is not None:
        values = recipe_config_values(model_args, family, id2label, config)
        labels = {k: values.pop(k) for k in ("id2label", "label2id")}
        for key, value in values.items():
            setattr(config, key, value)
        train_backbone_norms(config, random_weights=model_args.random_init)
    if labels is not None and model_args.random_init:
        processor = load_processor(path, offline)
        config.update(labels)
        logger.warning("*** RANDOM INITIALISATION of %s as asked (--random_init): no pretrained weights ***", path)
        model = AutoModelForObjectDetection.from_config(no_backbone_download(config))
        init_random_weights(model, family)
        return model, processor
    model, info = _pretrained(AutoModelForObjectDetection, path, offline, config=config, output_loading_info=True)
    check_loading_info(info, path)
    processor = load_processor(path, offline)  # after the weights: a folder without them says that first
    if labels is not None:
        model = rehead(model, labels["id2label"], keep_matching=model_args.keep_matching_heads, source=path)
    on_meta = [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if on_meta:
        raise ModelNotAvailable(f"{path}: {len(on_meta)} parameters were not materialised ({on_meta[:3]})")
    return model, processor


def _pretrained(auto_class, path: str, offline: bool, **kwargs):
    try:
        return auto_class.from_pretrained(path, local_files_only=offline, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelNotAvailable(f"{path}: cannot load a detector ({str(e).splitlines()[0]}); pass a trained "
                                "output folder, a checkpoint folder or a cached Hub id") from None


def load_processor(path: str, offline: bool = False):
    """The image processor saved with the model; a Trainer checkpoint-<step> folder may lack it, and its run's
    output folder (the parent) has it."""
    for source in (path, str(Path(path).parent)):
        try:
            return AutoImageProcessor.from_pretrained(source, local_files_only=offline)
        except (OSError, ValueError):
            continue
    raise ModelNotAvailable(f"{path}: no preprocessor_config.json (the image processor); save the model "
                            "with its processor (training does) or copy the file beside config.json")


def train_backbone_norms(config, *, random_weights: bool) -> None:
    """Unfreeze the backbone's BatchNorms (`freeze_backbone_batch_norms`, read when the model is built) where
    `families.trains_backbone_norms` says so; logged, since it changes what a checkpoint's statistics do."""
    if getattr(config, "freeze_backbone_batch_norms", False) and trains_backbone_norms(
            config, random_weights=random_weights):
        config.freeze_backbone_batch_norms = False
        logger.info("backbone BatchNorms train (%s)", "random weights" if random_weights else
                    "a small backbone whose original recipe trains them")


def set_backbone_trainable(model, family: Family, *, train_stem: bool) -> None:
    """The family's original backbone freezing: ResNet stem + first stage frozen (DETRs), the stem only
    (RT-DETR, D-FINE), nothing (ViT backbones). With `train_stem` (random weights, and the small backbones of
    `trains_whole_backbone`) all trains.

    transformers' own rule misses both HF ResNet ("stage.1" never occurs in "encoder.stages.1...": the whole
    backbone stays frozen) and timm ResNet (model type "timm_backbone" has no "resnet": nothing is frozen).
    """
    backbone = [(n, p) for n, p in model.named_parameters() if any(k in n for k in family.backbone_keys)]
    trained_keys, frozen_keys = family.trained_backbone_keys, family.frozen_backbone_keys
    if trained_keys and not any(k in n for n, _ in backbone for k in trained_keys):
        frozen_keys = ()  # not the backbone kind the rule is written for (e.g. Swin in a DETR): train all
    for name, param in backbone:
        frozen = any(k in name for k in frozen_keys) and not any(k in name for k in trained_keys)
        param.requires_grad_(train_stem or not frozen)
