"""What a model built with random weights needs to start as its original does (transformers' generic init differs):
trainable backbone norms, He-initialised HGNetV2 convolutions, the DETRs' xavier transformer, default-initialised heads
and N(0, 1) query embeddings. Each choice is per family (`families.Family`)."""

from __future__ import annotations

import math

import torch

from recipe.models.families import Family


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
