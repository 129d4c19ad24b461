"""What differs between DETR-family model types: classifier, loss terms and weights, lr groups, freezing.

One `Family` per `model_type`; everything family-specific that the rest of the recipe needs is read from
here. Values are the ORIGINAL recipe's (the repository each entry names in `source`) where transformers'
defaults differ; `configs/<family>.yaml` states the training schedule that goes with them.

Two loss conventions exist in transformers 5:
- `weighted_terms=False` (DETR-like): `loss_dict` holds unweighted terms; transformers weights them with
  its own table (and fixes loss_ce at 1 for DETR/Deformable DETR). The recipe re-weights every term with
  the family's `loss_weights` (auxiliary `_<i>` and encoder `_enc` terms take their base term's weight).
- `weighted_terms=True` (RT-DETR-like): `loss_dict` terms are already multiplied by the config's
  `weight_loss_*`; the recipe sets those weights in the config and sums the terms.
Either way a term the family does not know is an error naming the term, never a silent drop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from recipe.core.errors import ModelNotAvailable

# A loss_dict key is a base term plus an optional suffix: decoder layer `_0`.., RT-DETR-style `_aux_0`..,
# denoising `_dn_0`.., encoder proposals `_enc`.
_SUFFIX = re.compile(r"^(?P<base>.+?)(?:_aux_\d+|_dn_\d+|_enc|_\d+)?$")


def base_term(term: str) -> str:
    """`loss_giou_aux_2` -> `loss_giou`; `loss_ce_enc` -> `loss_ce`."""
    return _SUFFIX.match(term).group("base")


@dataclass(frozen=True)
class Family:
    model_type: str
    source: str                                   # where the original recipe's values come from
    softmax: bool = False                         # softmax + "no object" class, else sigmoid (focal) scores
    weighted_terms: bool = False                  # transformers already weighted the loss_dict terms
    loss_weights: dict[str, float] = field(default_factory=dict)  # base term -> weight; 0 = logged only
    config_defaults: dict = field(default_factory=dict)  # model config values of the original recipe
    # recipe argument -> this family's config attribute (matcher costs, and loss weights for weighted_terms)
    config_names: dict[str, str] = field(default_factory=dict)
    backbone_lr_multiplier: float = 0.1
    linear_proj_keys: tuple[str, ...] = ()        # parameters trained at lr x linear_proj_lr_multiplier
    no_decay_keys: tuple[str, ...] = ()           # parameter-name fragments trained without weight decay
    frozen_backbone_keys: tuple[str, ...] = ()    # backbone parameter-name fragments frozen for pretrained runs
    trained_backbone_keys: tuple[str, ...] = ()   # ... unless the name also contains one of these
    processor_class: str = "DeformableDetrImageProcessor"  # for models built from a config (no checkpoint)
    backbone_keys: tuple[str, ...] = ("backbone",)  # parameter-name fragments of the backbone (lr group, freezing)
    # D-FINE-style corner losses: the criterion class `losses.aligned_corner_loss` runs instead of transformers' loss
    corner_loss_criterion: str | None = None
    # ViT layer-wise lr decay (`optim.build_param_groups`): the decay and the parameter-name fragment of the ViT
    vit_layer_decay: float | None = None
    vit_keys: tuple[str, ...] = ()
    # Learned query embeddings the original builds as a plain nn.Embedding (initialised N(0, 1)), which transformers
    # initialises with N(0, init_std = 0.02): random-weight models get the original's scale (`init_random_queries`).
    query_embeddings: tuple[str, ...] = ()
    # Random weights: the encoder / decoder Linear weights xavier-uniform as the original's
    # `Transformer._reset_parameters` (transformers: N(0, 0.02), see `random_init.init_random_transformer`).
    xavier_transformer: bool = False
    # Padded batch sides must divide by this (`size_multiple`): RT-DETR-style hybrid encoders add upsampled
    # stride-32 maps to stride-16 ones (32).
    size_multiple: int = 1
    # Windowed ViT backbone (LW-DETR, RF-DETR): the patch grid splits into `num_windows` x `num_windows` windows, so
    # padded sides are multiples of patch_size x num_windows, read from the backbone config (`size_multiple`).
    windowed_vit: bool = False
    # The forward never reads the pixel mask (RT-DETR-style encoders take it only to drop it; YOLOS has no mask
    # input): the model sees the padded canvas as the image (see `DetectionCollator.boxes_on_canvas`).
    mask_blind: bool = False
    # Decoder layers to supervise: the user's `auxiliary_loss` reaches the config (YOLOS has no decoder, and
    # transformers' YOLOS breaks with auxiliary_loss=True).
    auxiliary_loss: bool = True
    # Two-stage models (config `two_stage`) also train their encoder proposals, as the original does
    # (`losses.encoder_proposal_loss`; transformers computes no such loss).
    encoder_proposal_loss: bool = False
    # Every HGNetV2 backbone of the family is small and trains whole (`trains_whole_backbone`).
    small_hgnet_backbones: bool = False

    def weight_of(self, term: str) -> float:
        """The weight of one loss_dict key; an unknown term is an error (a silent drop loses signal)."""
        base = base_term(term)
        if base not in self.loss_weights:
            raise KeyError(f"{self.model_type}: loss term {term!r} is not one the recipe knows "
                           f"({sorted(self.loss_weights)}); add it to recipe/models/families.py with its weight")
        return self.loss_weights[base]


_DETR_NAMES = {"class_cost": "class_cost", "bbox_cost": "bbox_cost", "giou_cost": "giou_cost"}
_RT_NAMES = {"class_cost": "matcher_class_cost", "bbox_cost": "matcher_bbox_cost", "giou_cost": "matcher_giou_cost",
             "class_loss_coefficient": "weight_loss_vfl", "bbox_loss_coefficient": "weight_loss_bbox",
             "giou_loss_coefficient": "weight_loss_giou"}
# torchvision/timm ResNet: the original DETRs train layer2-4 and freeze the stem and layer1 (DETR backbone.py).
_RESNET_FROZEN = dict(frozen_backbone_keys=("",), trained_backbone_keys=(
    "layer2", "layer3", "layer4", "stages.1.", "stages.2.", "stages.3."))
# RT-DETR / D-FINE / DEIMv2: `freeze_at: 0` freezes the stem only (rtdetrv2_r50vd.yml, dfine_hgnetv2_l/x_coco.yml);
# their small backbones train whole (`freeze_at: -1`, see `trains_whole_backbone`).
_RT_FROZEN = dict(frozen_backbone_keys=("embedder",))
_RT_NO_DECAY = ("encoder.", "decoder.")  # combined with norm/bias below: RT-DETR's optimizer regex


def _detr_like(model_type, source, ce, class_cost, **kwargs) -> Family:
    # DETR main.py `self.query_embed = nn.Embedding(num_queries, hidden_dim)` (N(0, 1)); Conditional / DAB / Table
    # Transformer keep it (DAB: `refpoint_embed`, 4-d anchors).
    kwargs.setdefault("query_embeddings", ("query_position_embeddings",))
    kwargs.setdefault("xavier_transformer", True)
    return Family(model_type=model_type, source=source,
                  loss_weights={"loss_ce": ce, "loss_bbox": 5.0, "loss_giou": 2.0, "cardinality_error": 0.0},
                  config_names=_DETR_NAMES,
                  config_defaults={"auxiliary_loss": True, "class_cost": class_cost, "bbox_cost": 5, "giou_cost": 2,
                                   **kwargs.pop("config_defaults", {})},
                  **kwargs)


FAMILIES: dict[str, Family] = {f.model_type: f for f in [
    _detr_like("detr", "facebookresearch/detr main.py", 1.0, 1, softmax=True, processor_class="DetrImageProcessor",
               **_RESNET_FROZEN),
    _detr_like("table-transformer", "microsoft/table-transformer src/detection_config.json", 1.0, 1, softmax=True,
               config_defaults={"eos_coefficient": 0.4}, processor_class="DetrImageProcessor", **_RESNET_FROZEN),
    _detr_like("conditional_detr", "Atten4Vis/ConditionalDETR main.py", 2.0, 2,
               processor_class="ConditionalDetrImageProcessor", **_RESNET_FROZEN),
    _detr_like("dab-detr", "IDEA-Research/DAB-DETR main.py", 1.0, 2, processor_class="ConditionalDetrImageProcessor",
               query_embeddings=("query_refpoint_embeddings",), **_RESNET_FROZEN),
    # Deformable DETR: no xavier pass, transformers initialises its deformable attention as the original does.
    _detr_like("deformable_detr", "fundamentalvision/Deformable-DETR main.py", 2.0, 2,
               linear_proj_keys=("sampling_offsets", "reference_points"), xavier_transformer=False,
               encoder_proposal_loss=True, **_RESNET_FROZEN),
    # YOLOS has no decoder: no auxiliary loss (transformers' YOLOS breaks with auxiliary_loss=True).
    Family("yolos", "hustvl/YOLOS main.py", softmax=True,
           loss_weights={"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "cardinality_error": 0.0},
           config_names=_DETR_NAMES, config_defaults={"class_cost": 1, "bbox_cost": 5, "giou_cost": 2},
           backbone_lr_multiplier=1.0, processor_class="YolosImageProcessor", mask_blind=True, auxiliary_loss=False),
    # LW-DETR / RF-DETR: IA-BCE class loss weight 1, encoder proposals trained (`_enc` terms), ViT backbone
    # trained at 1.5x lr (lr_encoder 1.5e-4 for lr 1e-4).
    *[Family(t, src, loss_weights={"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "cardinality_error": 0.0},
             config_names={**_DETR_NAMES, "class_loss_coefficient": "class_loss_coefficient"},
             config_defaults={"auxiliary_loss": True, "class_cost": 2, "bbox_cost": 5, "giou_cost": 2, **cfg},
             backbone_lr_multiplier=1.5, processor_class=proc, windowed_vit=True,
             # lr_vit_layer_decay 0.8 (LW-DETR scripts/lwdetr_*_coco_train.sh; rf-detr config.py)
             vit_layer_decay=0.8, vit_keys=("backbone.backbone.",))
      for t, src, proc, cfg in (
          ("lw_detr", "Atten4Vis/LW-DETR main.py", "DeformableDetrImageProcessor", {}),
          # RF-DETR trains its decoder without dropout (roboflow/rf-detr rfdetr/config.py `dropout: float = 0.0`);
          # transformers' RfDetrConfig.dropout defaults to 0.1. LW-DETR got the same fix upstream (transformers
          # PR #44441).
          ("rf_detr", "roboflow/rf-detr config.py", "RfDetrImageProcessor", {"dropout": 0.0}))],
    *[Family(t, src, weighted_terms=True, loss_weights={**base, "loss_bbox": 5.0, "loss_giou": 2.0},
             config_names={**_RT_NAMES, **names}, config_defaults={"auxiliary_loss": True, **cfg},
             backbone_lr_multiplier=mult, no_decay_keys=_RT_NO_DECAY, processor_class="RTDetrImageProcessor",
             size_multiple=32, mask_blind=True, **_RT_FROZEN, **extra)
      for t, src, base, names, cfg, mult, extra in (
          ("rt_detr", "lyuwenyu/RT-DETR rtdetr_pytorch configs", {"loss_vfl": 1.0}, {}, {}, 0.1, {}),
          ("rt_detr_v2", "lyuwenyu/RT-DETR rtdetrv2_pytorch configs", {"loss_vfl": 1.0}, {}, {}, 0.1, {}),
          ("d_fine", "Peterande/D-FINE configs", {"loss_vfl": 1.0, "loss_fgl": 0.15, "loss_ddf": 1.5}, {},
           {"weight_loss_fgl": 0.15, "weight_loss_ddf": 1.5}, 0.05,
           {"corner_loss_criterion": "transformers.loss.loss_d_fine.DFineLoss"}),
          # DEIMv2 names its backbone `model.conv_encoder.model.*` (no "backbone" in the names); its HGNetV2
          # backbones are all small (Atto..N: deimv2_hgnetv2_*_coco.yml `freeze_at: -1, freeze_norm: False`), and
          # transformers' Deimv2Config leaves use_learnable_affine_block off, so the family says it.
          ("deimv2", "Intellindust-AI-Lab/DEIMv2 configs",
           {"loss_mal": 1.0, "loss_fgl": 0.15, "loss_ddf": 1.5}, {"class_loss_coefficient": "weight_loss_mal"},
           {"weight_loss_fgl": 0.15, "weight_loss_ddf": 1.5}, 0.05,
           {"backbone_keys": ("conv_encoder.model.",), "small_hgnet_backbones": True,
            "corner_loss_criterion": "transformers.loss.loss_deimv2.Deimv2Loss"}))],
]}


def trains_whole_backbone(config) -> bool:
    """Backbones whose original recipe freezes nothing: ResNet-18/34-vd (basic blocks; RT-DETR's
    rtdetrv2_r18vd_120e_coco.yml and r34vd: `freeze_at: -1, freeze_norm: False`), HGNetV2 with learnable affine
    blocks (B0-B3; D-FINE's dfine_hgnetv2_s/m_coco.yml: `freeze_at: -1, use_lab: True`), and any backbone a
    family's freezing rule was not written for (ViTs, Swin: DINO and RF-DETR freeze none of them)."""
    backbone = getattr(config, "backbone_config", None)
    small_hgnet = _family_or_default(config.model_type).small_hgnet_backbones and \
        getattr(backbone, "model_type", None) == "hgnet_v2"
    return small_hgnet or getattr(backbone, "layer_type", None) == "basic" or bool(
        getattr(backbone, "use_learnable_affine_block", False))


def trains_backbone_norms(config, *, random_weights: bool) -> bool:
    """Whether the backbone's BatchNorms train (else transformers freezes them: `freeze_backbone_batch_norms`).

    Random weights: always. transformers builds a frozen BatchNorm as an identity (mean 0, var 1) and initialises
    HGNetV2 convs with normal(0, 0.02): with nothing to renormalise, a random D-FINE / DEIMv2 backbone puts out
    features of std ~1e-12 and the detector never sees the image. Pretrained: the small backbones whose originals
    train their norms (`trains_whole_backbone`: D-FINE / DEIMv2 HGNetV2 B0-B3, `freeze_norm: False` in
    dfine_hgnetv2_s/m/n configs; RT-DETR r18/r34vd `freeze_norm: False`); the large ones (HGNetV2 B4/B5 of D-FINE
    L/X, ResNet-50/101-vd of RT-DETR) keep the checkpoint's statistics frozen, as their originals do
    (`freeze_norm: True`): small fine-tuning batches would otherwise re-estimate them from a handful of images."""
    return random_weights or trains_whole_backbone(config)


def family_of(model_type: str) -> Family:
    """The Family of a config's model_type; a clear error for a type the recipe cannot train."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ModelNotAvailable(
            f"model_type {model_type!r} is not a DETR-family detector this recipe trains; supported: "
            f"{', '.join(sorted(FAMILIES))}") from None


def uses_softmax(model_type: str) -> bool:
    return family_of(model_type).softmax


def config_overrides(family: Family, model_args) -> dict:
    """Model config values: the family's original recipe, then what the user set explicitly (not None)."""
    values = dict(family.config_defaults)
    for arg, attr in family.config_names.items():
        user = getattr(model_args, arg, None)
        if user is not None:
            values[attr] = user
    if getattr(model_args, "auxiliary_loss", None) is not None and family.auxiliary_loss:
        values["auxiliary_loss"] = model_args.auxiliary_loss
    return values


def loss_weights(family: Family, model_args=None) -> dict[str, float]:
    """Base-term weights for re-weighting (families with unweighted terms), user coefficients applied."""
    weights = dict(family.loss_weights)
    if family.weighted_terms or model_args is None:
        return weights
    for arg, term in (("class_loss_coefficient", "loss_ce"), ("bbox_loss_coefficient", "loss_bbox"),
                      ("giou_loss_coefficient", "loss_giou")):
        if getattr(model_args, arg, None) is not None:
            weights[term] = float(getattr(model_args, arg))
    return weights


def _family_or_default(model_type: str) -> Family:
    # A model_type the recipe does not train (a predict-only Hub detector) pads and reads its mask as DETR does.
    return FAMILIES.get(model_type) or Family(model_type, source="transformers' defaults")


def size_multiple(config) -> int:
    """Padded batch sizes must be a multiple of this: the family's `size_multiple`, or for windowed ViT backbones
    (LW-DETR, RF-DETR) patch_size x windows per side of the backbone config."""
    family = _family_or_default(config.model_type)
    if not family.windowed_vit:
        return family.size_multiple
    backbone = config.backbone_config
    windows = getattr(backbone, "num_windows_side", None) or getattr(backbone, "num_windows", 1)
    return int(backbone.patch_size) * int(windows)


def ignores_pixel_mask(model_type: str) -> bool:
    """The family's `mask_blind`: batches of such a model keep their boxes in the padded canvas."""
    return _family_or_default(model_type).mask_blind


def vit_depth(config) -> int:
    """The number of ViT blocks of a model's backbone (0 when it is not a ViT): layer-wise lr decay's depth."""
    return int(getattr(getattr(config, "backbone_config", None), "num_hidden_layers", 0) or 0)


def collator_for(config, image_processor, *, normalise_on_device: bool = False,
                 pad_size: tuple[int, int] | None = None):
    """The batch collator a model of this config needs: padding multiple and box frame (see `DetectionCollator`
    for `normalise_on_device`, which the recipe's Trainer does, and `pad_size`, the smallest canvas)."""
    from recipe.pipeline.collate import DetectionCollator

    return DetectionCollator(image_processor, size_multiple(config), pad_size=pad_size,
                             boxes_on_canvas=ignores_pixel_mask(config.model_type),
                             normalise_on_device=normalise_on_device)
