"""Model and image processor: pretrained (Hub id, local folder, local cache; offline-safe) or from a config."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import math
import os

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

from .errors import ConfigError, ModelNotAvailable
from .families import Family, config_overrides, family_of, loss_weights, trains_backbone_norms, trains_whole_backbone
from .losses import install_recipe_loss

logger = logging.getLogger(__name__)


def is_offline(model_args) -> bool:
    return bool(model_args.offline) or os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def check_model_available(model_args) -> None:
    """Fail early (before any data is read): a checkpoint not in the cache offline, an architecture that is
    not a DETR-family detector, or a package the checkpoint needs that is not installed."""
    if model_args.model_config:
        try:
            model_type = json.loads(model_args.model_config).get("model_type", "deformable_detr")
        except (json.JSONDecodeError, AttributeError) as e:
            raise ConfigError(f"model_config is not a JSON object ({e})") from None
        family_of(model_type)
        return
    if not model_args.model_name_or_path:
        raise ModelNotAvailable("set model_name_or_path (Hub id or local folder) or model_config")
    if str(model_args.model_name_or_path).lower().endswith(".onnx"):
        raise ModelNotAvailable(f"model {model_args.model_name_or_path!r} is an exported ONNX graph, for predict and "
                                "evaluate only; train from the PyTorch folder it was exported from")
    offline = is_offline(model_args)
    if not offline and not os.path.isdir(model_args.model_name_or_path):
        offline = offline_if_hub_unreachable(model_args)
    try:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, local_files_only=offline)
    except ImportError as e:
        raise ModelNotAvailable(
            f"model {model_args.model_name_or_path!r} needs a package that is missing: {e}") from None
    except Exception as e:  # noqa: BLE001 - the hub raises many types; all mean "not here"
        where = "the local cache (offline mode)" if offline else "the Hub or the local cache"
        scratch = ("for random weights without any Hub file, name the architecture instead: --model_config "
                   "deformable_detr (any family name: transformers' default architecture) or a config with a "
                   "model_config mapping (configs/scratch.yaml)")
        if model_args.random_init:  # --random_init builds the checkpoint's architecture: it needs its config.json
            hint = f"--random_init still needs its config.json; {scratch}"
        else:
            hint = f"pass a local folder; or, {scratch}"
        raise ModelNotAvailable(
            f"model {model_args.model_name_or_path!r} is not in {where} ({type(e).__name__}). Download it once "
            f"where there is network (`hf download ID`), {hint}.") from None
    family_of(config.model_type)
    check_packages(config, model_args.model_name_or_path)


def hub_unreachable_reason(timeout: float = 5.0) -> str | None:
    """One request to the Hub's endpoint (no retries): None when it answers (any HTTP status), else the reason. In a
    daemon thread, since a resolver without network can take ~20 s to give up and the socket timeout does not
    cover name resolution."""
    import threading
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    def probe() -> str | None:
        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
        except urllib.error.HTTPError:
            return None
        except (urllib.error.URLError, OSError) as e:
            return str(getattr(e, "reason", e))
        return None

    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(probe()), daemon=True)  # never joined at exit
    thread.start()
    thread.join(timeout)
    return answer[0] if answer else f"no answer from {constants.ENDPOINT} within {timeout:g} s"


def offline_if_hub_unreachable(model_args) -> bool:
    """Without a network, huggingface_hub retries each file 5 times with back-off (~30 s, each warning printed
    twice) before failing. One quick request instead: unreachable and cached -> the run goes on offline (said once);
    unreachable and not cached -> one line suggesting --offline and the ways out. -> whether to load offline."""
    reason = hub_unreachable_reason()
    if reason is None:
        return False
    try:
        AutoConfig.from_pretrained(model_args.model_name_or_path, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: whatever the type
        raise ModelNotAvailable(
            f"model {model_args.model_name_or_path!r}: the Hub cannot be reached ({reason}) and it is not in the "
            "local cache. On a machine without network pass --offline (or HF_HUB_OFFLINE=1) and a cached model or "
            "local folder; for random weights without any Hub file: --model_config deformable_detr (any family "
            "name) or a config with a model_config mapping (configs/scratch.yaml).") from None
    logger.warning("the Hub cannot be reached (%s): using the cached copy of %s (pass --offline to skip this check)",
                   reason, model_args.model_name_or_path)
    model_args.offline = True
    return True


def check_packages(config, name: str) -> None:
    """A checkpoint whose backbone is a timm model cannot be built without timm: say so, with the command."""
    backbone = getattr(config, "backbone_config", None)
    timm_backbone = getattr(backbone, "model_type", None) == "timm_backbone"
    if (timm_backbone or getattr(config, "use_timm_backbone", False)) and importlib.util.find_spec("timm") is None:
        raise ModelNotAvailable(f"model {name!r} has a timm backbone ({getattr(backbone, 'backbone', '?')}) "
                                "and needs the timm package: pip install 'timm>=1.0,<2'")


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


def load_model_and_processor(model_args, id2label: dict[int, str]):
    """-> (model, image_processor) for the data's classes `id2label` (contiguous labels 0..N-1).

    A pretrained checkpoint keeps every weight; only the class-dependent parameters are re-initialised,
    and only when the class count differs (see `rehead`). Then the family's backbone freezing and loss."""
    if model_args.model_config:
        model, processor = _from_model_config(model_args, id2label)
    else:
        model, processor = _from_checkpoint(model_args, id2label)
    family = family_of(model.config.model_type)
    train_stem = model_args.train_backbone_stem
    if train_stem is None:
        train_stem = bool(model_args.model_config or model_args.random_init)
    set_backbone_trainable(model, family, train_stem=train_stem or trains_whole_backbone(model.config))
    install_recipe_loss(model, family, loss_weights(family, model_args))
    return model, processor


def _from_model_config(model_args, id2label):
    try:
        cfg = json.loads(model_args.model_config)
    except json.JSONDecodeError as e:
        raise ConfigError(f"model_config is not valid JSON ({e})") from None
    model_type = cfg.pop("model_type", "deformable_detr")
    family = family_of(model_type)
    base = AutoConfig.for_model(model_type, **cfg)
    config = AutoConfig.for_model(model_type, **{**cfg, **recipe_config_values(model_args, family, id2label, base)})
    train_backbone_norms(config, random_weights=True)
    model = AutoModelForObjectDetection.from_config(_no_backbone_download(config))
    init_random_weights(model, family)
    import transformers

    processor = getattr(transformers, family.processor_class)()
    logger.warning("model built from model_config with random weights (%s, %.1fM parameters)",
                   model_type, sum(p.numel() for p in model.parameters()) / 1e6)
    return model, processor


def _from_checkpoint(model_args, id2label):
    path, offline = model_args.model_name_or_path, is_offline(model_args)
    config = AutoConfig.from_pretrained(path, local_files_only=offline)
    family = family_of(config.model_type)
    values = recipe_config_values(model_args, family, id2label, config)
    labels = {k: values.pop(k) for k in ("id2label", "label2id")}
    for key, value in values.items():
        setattr(config, key, value)
    train_backbone_norms(config, random_weights=model_args.random_init)
    processor = AutoImageProcessor.from_pretrained(path, local_files_only=offline)
    if model_args.random_init:
        config.update(labels)
        logger.warning("*** RANDOM INITIALISATION of %s as asked (--random_init): no pretrained weights ***", path)
        model = AutoModelForObjectDetection.from_config(_no_backbone_download(config))
        init_random_weights(model, family)
        return model, processor
    model, info = AutoModelForObjectDetection.from_pretrained(path, config=config, local_files_only=offline,
                                                             output_loading_info=True)
    check_loading_info(info, path)
    model = rehead(model, labels["id2label"])
    on_meta = [n for n, p in model.named_parameters(remove_duplicate=False) if p.is_meta]
    if on_meta:
        raise ModelNotAvailable(f"{path}: {len(on_meta)} parameters were not materialised ({on_meta[:3]})")
    return model, processor


def train_backbone_norms(config, *, random_weights: bool) -> None:
    """Unfreeze the backbone's BatchNorms (`freeze_backbone_batch_norms`, read when the model is built) where
    `families.trains_backbone_norms` says so; logged, since it changes what a checkpoint's statistics do."""
    if getattr(config, "freeze_backbone_batch_norms", False) and trains_backbone_norms(
            config, random_weights=random_weights):
        config.freeze_backbone_batch_norms = False
        logger.info("backbone BatchNorms train (%s)", "random weights" if random_weights else
                    "a small backbone whose original recipe trains them")


class BatchStatsNorm2d(torch.nn.Module):
    """A BatchNorm2d (batch statistics in training, running statistics in eval, learned affine) stored under the keys
    of transformers' frozen batch norms (`weight`, `bias`, `running_mean`, `running_var`; eps 1e-5), so the saved
    model loads into the frozen norms that `from_pretrained` builds and evaluates the same.

    For random weights only: the DETR-era conv encoders replace every backbone BatchNorm by a frozen one, which for
    a fresh model is an identity (mean 0, var 1): nothing normalises the random ResNet's activations, whose channel
    means then swamp their spatial variation (the DETR encoder's tokens become near copies of each other)."""

    def __init__(self, frozen: torch.nn.Module, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.weight = torch.nn.Parameter(frozen.weight.detach().clone())
        self.bias = torch.nn.Parameter(frozen.bias.detach().clone())
        self.register_buffer("running_mean", frozen.running_mean.detach().clone())
        self.register_buffer("running_var", frozen.running_var.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return torch.nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                                  True, self.momentum, 1e-5)
        # The frozen norms' own arithmetic, in their order: evaluation here and after loading agree bit for bit.
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + 1e-5).rsqrt()
        return x * scale + (self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale)


def unfreeze_random_norms(model) -> int:
    """Random weights: every frozen BatchNorm (transformers' `*FrozenBatchNorm2d`) becomes a `BatchStatsNorm2d`.
    -> how many were replaced."""
    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module).__name__.endswith("FrozenBatchNorm2d"):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, BatchStatsNorm2d(module))
            replaced += 1
    return replaced


@torch.no_grad()
def init_random_transformer(model, family: Family) -> None:
    """Random-weight DETR / Conditional / DAB / Table Transformer: encoder and decoder Linear weights xavier-uniform,
    biases 0, as the originals' `Transformer._reset_parameters` (facebookresearch/detr models/transformer.py).

    transformers draws them from N(0, 0.02): query and key projections so small that every decoder query attends
    uniformly to the image and all queries give one box (measured on the tests' d_model 32: decoder output std over
    queries 6e-4 at init; after 300 steps on 8 scenes the predictions were identical and map 0.000)."""
    if not family.xavier_transformer:
        return
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and (".encoder." in f".{name}" or ".decoder." in f".{name}"):
            torch.nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                module.bias.zero_()


@torch.no_grad()
def init_random_queries(model, family: Family) -> None:
    """Random weights: the learned query embeddings (`Family.query_embeddings`) at the original's N(0, 1).

    At transformers' N(0, 0.02) the queries of a DETR-style decoder are nearly identical, and a freshly built DETR or
    Conditional DETR collapses to one box and one score for every query (measured: std over queries ~1e-7 after
    300 steps on 8 scenes, map 0.000)."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) and name.rpartition(".")[2] in family.query_embeddings:
            torch.nn.init.normal_(module.weight, 0.0, 1.0)


@torch.no_grad()
def init_random_heads(model, family: Family) -> None:
    """Random-weight DETR / Conditional / DAB / Table Transformer: the class head and the box MLP at PyTorch's
    default Linear init, as the originals build them (`nn.Linear`, `MLP` in facebookresearch/detr models/detr.py);
    Conditional / DAB then set their last box layer to 0 and the class bias to the focal-loss prior (their originals'
    `constant_(bbox_embed.layers[-1], 0)`, prior 0.01), which transformers' DAB-DETR init also does.

    transformers draws these Linear layers from N(0, 0.02) (the generic `_init_weights`): through the three box
    layers the signal and its gradient shrink ~10x each (measured on the tests' d_model 32: box-head output std
    4e-4 and std over queries 5e-5; with this init 0.13 and 6e-3). Not enough on its own: DETR still does not
    memorise 8 scenes in 300 steps (tests/test_memorise.py NOT_YET)."""
    if not family.xavier_transformer:
        return
    heads = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
             and n.split(".")[0] in ("class_labels_classifier", "class_embed", "bbox_predictor")]
    for module in heads:
        module.reset_parameters()
    if family.softmax:
        return
    box = getattr(model, "bbox_predictor", None)
    if box is not None:
        torch.nn.init.zeros_(box.layers[-1].weight)
        torch.nn.init.zeros_(box.layers[-1].bias)
    classifier = getattr(model, "class_labels_classifier", None) or getattr(model, "class_embed", None)
    if classifier is not None:
        torch.nn.init.constant_(classifier.bias, -math.log((1 - 0.01) / 0.01))


def init_random_weights(model, family: Family) -> None:
    """What a model built from random weights needs to see the image and to learn, as its original starts: trainable
    backbone norms, HGNetV2 He init, the DETRs' xavier transformer, default-initialised heads and N(0, 1) queries."""
    unfreeze_random_norms(model)
    init_random_backbone(model, family)
    init_random_transformer(model, family)
    init_random_heads(model, family)
    init_random_queries(model, family)


@torch.no_grad()
def init_random_backbone(model, family: Family) -> None:
    """Random HGNetV2 backbones (D-FINE, DEIMv2): convolutions He-initialised (fan_out, as torchvision's and
    transformers' ResNet), BatchNorms at weight 1, bias 0.

    transformers initialises HGNetV2 convolutions with normal(0, 0.02) (the generic `_init_weights`): over its ~20
    layers the signal shrinks to std ~1e-12 at stride 32, so a freshly built D-FINE is blind in eval mode until its
    norms have learned statistics. Other backbones already start He-initialised (ResNet) or are ViTs."""
    backbone = getattr(model.config, "backbone_config", None)
    if getattr(backbone, "model_type", None) != "hgnet_v2":
        return
    for name, module in model.named_modules():
        if not any(k in name for k in family.backbone_keys):
            continue
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                module.bias.zero_()


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


def rehead(model, id2label: dict[int, str]):
    """The same model for the classes `id2label`: every parameter and buffer whose shape does not depend on
    the class count keeps the checkpoint's value; the class-dependent ones (class heads, the softmax
    "no object" row, encoder score heads, denoising class embeddings) are freshly initialised. Weight
    sharing follows the checkpoint: heads shared there stay shared, distinct ones (box refine) stay distinct.

    Same class count: nothing is re-initialised (only the names change). Building a fresh model and copying
    avoids `from_pretrained(ignore_mismatched_sizes=True)`, which crashes on tied heads or leaves them on
    the meta device (transformers 5.23-5.24)."""
    label2id = {v: k for k, v in id2label.items()}
    if len(id2label) == model.config.num_labels:
        model.config.id2label, model.config.label2id = id2label, label2id
        return model
    config = copy.deepcopy(model.config)
    config.id2label, config.label2id = id2label, label2id
    fresh = AutoModelForObjectDetection.from_config(_no_backbone_download(config))
    source = dict(model.named_parameters(remove_duplicate=False))
    reinitialised = _copy_parameters(fresh, source)
    source_buffers = dict(model.named_buffers())
    for name, buffer in fresh.named_buffers():
        if name in source_buffers and source_buffers[name].shape == buffer.shape:
            buffer.copy_(source_buffers[name])
    logger.warning("new classification heads for %d classes (checkpoint: %d): re-initialised %d tensors %s",
                   len(id2label), model.config.num_labels, len(reinitialised), _short(reinitialised))
    fresh.reinitialised_keys = reinitialised
    return fresh


@torch.no_grad()
def _copy_parameters(fresh, source: dict) -> list[str]:
    """Give `fresh` the source's parameter values and sharing; a name whose shape differs keeps fresh's
    initialisation (shared where the source's was). -> the re-initialised names."""
    groups: dict = {}
    for name, param in fresh.named_parameters(remove_duplicate=False):
        src = source.get(name)
        keep = src is not None and src.shape == param.shape
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


def _no_backbone_download(config):
    """from_config must not fetch backbone weights (offline machines); the checkpoint supplies them."""
    for cfg in (config, getattr(config, "backbone_config", None)):
        if cfg is not None and getattr(cfg, "use_pretrained_backbone", False):
            cfg.use_pretrained_backbone = False
    return config


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
