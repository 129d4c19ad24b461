"""Published DETR-family checkpoints as a local Hub cache with random weights (tests never reach the Hub).

`write_cached_checkpoint(hf_home, hub_id)` writes `hf_home/hub/models--ORG--NAME/{refs/main, snapshots/<sha>/...}`,
the layout huggingface_hub reads under HF_HUB_OFFLINE=1. Each snapshot holds the checkpoint's published
`config.json` and `preprocessor_config.json` (old-format fields kept: `use_timm_backbone`, `backbone`,
`feature_extractor_type`, `max_size`), with only the widths of `Published.shrink` reduced, and weights of a seeded
random model saved under the key names and in the file format the Hub serves.

What is kept on purpose (the structure the recipe must cope with): tied or untied class heads (`with_box_refine`,
`two_stage`), the backbone kind (timm ResNet-50/18 exactly as published, HF ResNet-vd, HGNetV2, windowed ViT,
DINOv2-style ViT, plain ViT), two-stage heads, denoising heads, group-DETR, >= 2 decoder layers, the label set.
The timm ResNet-50s stay full size: their published config names only `"backbone": "resnet50"`, which no config
field can shrink, and writing + loading them costs well under a second each (see the test timings).

Sources of the published configs: the Hub pages of each repository (file listings and blobs, as stored in the
docs corpus of the search tool; cited per entry) and transformers' conversion scripts
(`src/transformers/models/*/convert_*.py`, cited per entry). Families converted by transformers >= 4.4x have a
config.json that is the config class's `to_dict()`; for those the table records the fields the conversion script
sets and the rest comes from the installed class defaults, exactly as `from_pretrained` fills absent keys.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# COCO 2017 category names by category id (1..90 with gaps). DETR-era checkpoints index their 91 logits by
# category id and call the gaps "N/A" (facebook/detr-resnet-50 config.json id2label); the RT-DETR / D-FINE
# conversions use the 80 names in order (huggingface/label-files coco-detection-mmdet-id2label.json).
_COCO_NAMES = {
    1: "person",
    2: "bicycle",
    3: "car",
    4: "motorcycle",
    5: "airplane",
    6: "bus",
    7: "train",
    8: "truck",
    9: "boat",
    10: "traffic light",
    11: "fire hydrant",
    13: "stop sign",
    14: "parking meter",
    15: "bench",
    16: "bird",
    17: "cat",
    18: "dog",
    19: "horse",
    20: "sheep",
    21: "cow",
    22: "elephant",
    23: "bear",
    24: "zebra",
    25: "giraffe",
    27: "backpack",
    28: "umbrella",
    31: "handbag",
    32: "tie",
    33: "suitcase",
    34: "frisbee",
    35: "skis",
    36: "snowboard",
    37: "sports ball",
    38: "kite",
    39: "baseball bat",
    40: "baseball glove",
    41: "skateboard",
    42: "surfboard",
    43: "tennis racket",
    44: "bottle",
    46: "wine glass",
    47: "cup",
    48: "fork",
    49: "knife",
    50: "spoon",
    51: "bowl",
    52: "banana",
    53: "apple",
    54: "sandwich",
    55: "orange",
    56: "broccoli",
    57: "carrot",
    58: "hot dog",
    59: "pizza",
    60: "donut",
    61: "cake",
    62: "chair",
    63: "couch",
    64: "potted plant",
    65: "bed",
    67: "dining table",
    70: "toilet",
    72: "tv",
    73: "laptop",
    74: "mouse",
    75: "remote",
    76: "keyboard",
    77: "cell phone",
    78: "microwave",
    79: "oven",
    80: "toaster",
    81: "sink",
    82: "refrigerator",
    84: "book",
    85: "clock",
    86: "vase",
    87: "scissors",
    88: "teddy bear",
    89: "hair drier",
    90: "toothbrush",
}
COCO91 = {str(i): _COCO_NAMES.get(i, "N/A") for i in range(91)}
COCO80 = {str(i): name for i, name in enumerate(_COCO_NAMES.values())}
TABLES = {"0": "table", "1": "table rotated"}

_IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


@dataclass(frozen=True)
class Published:
    """One Hub checkpoint: what its repository serves, and how the test copy is shrunk."""

    model_type: str
    variant: str  # family variant, e.g. "single-scale", "box-refine", "two-stage"
    config: dict  # published config.json without id2label/label2id (see `labels`)
    preprocessor: dict  # published preprocessor_config.json
    labels: dict  # published id2label
    weights: str  # the file transformers loads from `main` (safetensors wins where both exist)
    shrink: dict = field(default_factory=dict)  # merged into config (nested dicts merged key by key)
    also_bin: bool = False  # also write pytorch_model.bin (4.x key names, tied copies kept, as torch.save wrote)


# --- DETR-era checkpoints (converted with transformers 4.x; timm ResNet backbones) ------------------------------

# SenseTime/deformable-detr config.json "Add model" (Feb 2022, transformers 4.17.0.dev0); fields as in its
# fine-tuned copies that keep them (e.g. huggingface.co/ziffir/LPD_deform_detr_V1 config.json).
_DEFORMABLE = {
    "activation_dropout": 0.0,
    "activation_function": "relu",
    "architectures": ["DeformableDetrForObjectDetection"],
    "attention_dropout": 0.0,
    "auxiliary_loss": False,
    "backbone": "resnet50",
    "bbox_cost": 5,
    "bbox_loss_coefficient": 5,
    "class_cost": 1,
    "d_model": 256,
    "decoder_attention_heads": 8,
    "decoder_ffn_dim": 1024,
    "decoder_layerdrop": 0.0,
    "decoder_layers": 6,
    "decoder_n_points": 4,
    "dice_loss_coefficient": 1,
    "dilation": False,
    "dropout": 0.1,
    "encoder_attention_heads": 8,
    "encoder_ffn_dim": 1024,
    "encoder_layerdrop": 0.0,
    "encoder_layers": 6,
    "encoder_n_points": 4,
    "eos_coefficient": 0.1,
    "focal_alpha": 0.25,
    "giou_cost": 2,
    "giou_loss_coefficient": 2,
    "init_std": 0.02,
    "init_xavier_std": 1.0,
    "is_encoder_decoder": True,
    "mask_loss_coefficient": 1,
    "max_position_embeddings": 1024,
    "model_type": "deformable_detr",
    "num_channels": 3,
    "num_feature_levels": 4,
    "num_queries": 300,
    "position_embedding_type": "sine",
    "torch_dtype": "float32",
    "transformers_version": "4.17.0.dev0",
    "two_stage": False,
    "two_stage_num_proposals": 300,
    "use_pretrained_backbone": True,
    "use_timm_backbone": True,
    "with_box_refine": False,
}
# SenseTime/deformable-detr*/preprocessor_config.json on main ("Update preprocessor_config.json", 305 bytes; same
# text as huggingface.co/SenseTime/deformable-detr-single-scale-dc5/blob/main/preprocessor_config.json).
_DEFORMABLE_PRE = {
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "DeformableDetrFeatureExtractor",
    "format": "coco_detection",
    **_IMAGENET,
    "size": {"shortest_edge": 800, "longest_edge": 1333},
}
_DETR_SHRINK = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "num_queries": 12,
}
_DEFORMABLE_SHRINK = {**_DETR_SHRINK, "two_stage_num_proposals": 12}

PUBLISHED: dict[str, Published] = {
    "SenseTime/deformable-detr": Published(
        "deformable_detr",
        "single-scale-multi-level",
        _DEFORMABLE,
        _DEFORMABLE_PRE,
        COCO91,
        "model.safetensors",
        _DEFORMABLE_SHRINK,
        also_bin=True,
    ),
    # huggingface.co/SenseTime/deformable-detr-with-box-refine/tree/main: config.json "Add model" (4.54 kB),
    # model.safetensors + pytorch_model.bin; the variant differs only in with_box_refine.
    "SenseTime/deformable-detr-with-box-refine": Published(
        "deformable_detr",
        "box-refine",
        {**_DEFORMABLE, "with_box_refine": True},
        _DEFORMABLE_PRE,
        COCO91,
        "model.safetensors",
        _DEFORMABLE_SHRINK,
    ),
    "SenseTime/deformable-detr-with-box-refine-two-stage": Published(
        "deformable_detr",
        "box-refine-two-stage",
        {**_DEFORMABLE, "with_box_refine": True, "two_stage": True},
        _DEFORMABLE_PRE,
        COCO91,
        "model.safetensors",
        _DEFORMABLE_SHRINK,
    ),
    # facebook/detr-resnet-50 config.json ("Update config.json", transformers 4.7.0.dev0; the fields as kept by
    # copies such as huggingface.co/SvNext/GambleTestDETR config.json); preprocessor_config.json "First commit"
    # (274 bytes; the old DetrFeatureExtractor form with max_size, cf. facebook/detr-resnet-101-dc5 before #clean-up).
    "facebook/detr-resnet-50": Published(
        "detr",
        "resnet-50",
        {
            "activation_dropout": 0.0,
            "activation_function": "relu",
            "architectures": ["DetrForObjectDetection"],
            "attention_dropout": 0.0,
            "auxiliary_loss": False,
            "backbone": "resnet50",
            "bbox_cost": 5,
            "bbox_loss_coefficient": 5,
            "class_cost": 1,
            "classifier_dropout": 0.0,
            "d_model": 256,
            "decoder_attention_heads": 8,
            "decoder_ffn_dim": 2048,
            "decoder_layerdrop": 0.0,
            "decoder_layers": 6,
            "dice_loss_coefficient": 1,
            "dilation": False,
            "dropout": 0.1,
            "encoder_attention_heads": 8,
            "encoder_ffn_dim": 2048,
            "encoder_layerdrop": 0.0,
            "encoder_layers": 6,
            "eos_coefficient": 0.1,
            "giou_cost": 2,
            "giou_loss_coefficient": 2,
            "init_std": 0.02,
            "init_xavier_std": 1.0,
            "is_encoder_decoder": True,
            "mask_loss_coefficient": 1,
            "max_position_embeddings": 1024,
            "model_type": "detr",
            "num_channels": 3,
            "num_hidden_layers": 6,
            "num_queries": 100,
            "position_embedding_type": "sine",
            "scale_embedding": False,
            "torch_dtype": "float32",
            "transformers_version": "4.7.0.dev0",
            "use_pretrained_backbone": True,
            "use_timm_backbone": True,
        },
        {
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "DetrFeatureExtractor",
            "format": "coco_detection",
            **_IMAGENET,
            "max_size": 1333,
            "size": 800,
        },
        COCO91,
        "model.safetensors",
        _DETR_SHRINK,
    ),
    # microsoft/conditional-detr-resnet-50 config.json "Add model" (Sep 2022, 4.43 kB; fields as kept by copies
    # such as huggingface.co/CreatlV/conditional-detr-resnet-50_fine_tuned_cova_v2_100_epochs);
    # preprocessor_config.json on main (huggingface.co/microsoft/conditional-detr-resnet-50/blob/main/...).
    "microsoft/conditional-detr-resnet-50": Published(
        "conditional_detr",
        "resnet-50",
        {
            "activation_dropout": 0.0,
            "activation_function": "relu",
            "architectures": ["ConditionalDetrForObjectDetection"],
            "attention_dropout": 0.0,
            "auxiliary_loss": False,
            "backbone": "resnet50",
            "bbox_cost": 5,
            "bbox_loss_coefficient": 5,
            "class_cost": 2,
            "cls_loss_coefficient": 2,
            "d_model": 256,
            "decoder_attention_heads": 8,
            "decoder_ffn_dim": 2048,
            "decoder_layerdrop": 0.0,
            "decoder_layers": 6,
            "dice_loss_coefficient": 1,
            "dilation": False,
            "dropout": 0.1,
            "encoder_attention_heads": 8,
            "encoder_ffn_dim": 2048,
            "encoder_layerdrop": 0.0,
            "encoder_layers": 6,
            "focal_alpha": 0.25,
            "giou_cost": 2,
            "giou_loss_coefficient": 2,
            "init_std": 0.02,
            "init_xavier_std": 1.0,
            "is_encoder_decoder": True,
            "mask_loss_coefficient": 1,
            "max_position_embeddings": 1024,
            "model_type": "conditional_detr",
            "num_channels": 3,
            "num_hidden_layers": 6,
            "num_queries": 300,
            "position_embedding_type": "sine",
            "scale_embedding": False,
            "torch_dtype": "float32",
            "transformers_version": "4.22.0.dev0",
            "use_pretrained_backbone": True,
            "use_timm_backbone": True,
        },
        {
            "do_normalize": True,
            "do_resize": True,
            "image_processor_type": "ConditionalDetrImageProcessor",
            "format": "coco_detection",
            **_IMAGENET,
            "size": {"shortest_edge": 800, "longest_edge": 1333},
        },
        COCO91,
        "model.safetensors",
        _DETR_SHRINK,
    ),
    # IDEA-Research/dab-detr-resnet-50: converted by transformers' convert_dab_detr_original_pytorch_checkpoint_to_
    # pytorch.py (DabDetrConfig() defaults + use_timm_backbone/backbone resnet50, 91 COCO labels, prelu).
    "IDEA-Research/dab-detr-resnet-50": Published(
        "dab-detr",
        "resnet-50",
        {
            "architectures": ["DabDetrForObjectDetection"],
            "model_type": "dab-detr",
            "backbone": "resnet50",
            "use_timm_backbone": True,
            "use_pretrained_backbone": True,
            "backbone_config": None,
            "num_queries": 300,
            "hidden_size": 256,
            "encoder_layers": 6,
            "decoder_layers": 6,
            "encoder_ffn_dim": 2048,
            "decoder_ffn_dim": 2048,
            "activation_function": "prelu",
            "auxiliary_loss": False,
            "query_dim": 4,
            "num_patterns": 0,
            "keep_query_pos": False,
            "random_refpoints_xy": False,
            "torch_dtype": "float32",
        },
        {
            "do_convert_annotations": True,
            "do_normalize": True,
            "do_pad": True,
            "do_rescale": True,
            "do_resize": True,
            "format": "coco_detection",
            **_IMAGENET,
            "image_processor_type": "ConditionalDetrImageProcessor",
            "resample": 2,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": 800, "longest_edge": 1333},
        },
        COCO91,
        "model.safetensors",
        {
            "hidden_size": 32,
            "encoder_layers": 1,
            "decoder_layers": 2,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "num_queries": 12,
        },
    ),
    # microsoft/table-transformer-detection (huggingface.co/microsoft/table-transformer-detection/tree/main):
    # config.json "Upload TableTransformerForObjectDetection" (1.23 kB, timm resnet18, 15 queries, eos 0.4);
    # preprocessor_config.json "Upload feature extractor" (273 bytes, still max_size on main: the clean-up PR #17
    # is unmerged). model.safetensors + pytorch_model.bin on main.
    "microsoft/table-transformer-detection": Published(
        "table-transformer",
        "detection",
        {
            "activation_dropout": 0.0,
            "activation_function": "relu",
            "architectures": ["TableTransformerForObjectDetection"],
            "attention_dropout": 0.0,
            "auxiliary_loss": False,
            "backbone": "resnet18",
            "bbox_cost": 5,
            "bbox_loss_coefficient": 5,
            "class_cost": 1,
            "d_model": 256,
            "decoder_attention_heads": 8,
            "decoder_ffn_dim": 2048,
            "decoder_layerdrop": 0.0,
            "decoder_layers": 6,
            "dice_loss_coefficient": 1,
            "dilation": False,
            "dropout": 0.1,
            "encoder_attention_heads": 8,
            "encoder_ffn_dim": 2048,
            "encoder_layerdrop": 0.0,
            "encoder_layers": 6,
            "eos_coefficient": 0.4,
            "giou_cost": 2,
            "giou_loss_coefficient": 2,
            "init_std": 0.02,
            "init_xavier_std": 1.0,
            "is_encoder_decoder": True,
            "mask_loss_coefficient": 1,
            "max_position_embeddings": 1024,
            "model_type": "table-transformer",
            "num_channels": 3,
            "num_hidden_layers": 6,
            "num_queries": 15,
            "position_embedding_type": "sine",
            "scale_embedding": False,
            "torch_dtype": "float32",
            "transformers_version": "4.24.0.dev0",
            "use_pretrained_backbone": True,
            "use_timm_backbone": True,
        },
        {
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "DetrFeatureExtractor",
            "format": "coco_detection",
            **_IMAGENET,
            "max_size": 800,
            "size": 800,
        },
        TABLES,
        "model.safetensors",
        {**_DETR_SHRINK, "num_queries": 15},
        also_bin=True,
    ),
    # hustvl/yolos-small config.json "add model" (Apr 2022, 4.13 kB): DeiT-S sized ViT, 100 detection tokens,
    # image_size [800, 1333]; preprocessor_config.json (YolosFeatureExtractor form). model.safetensors since #2.
    "hustvl/yolos-small": Published(
        "yolos",
        "small",
        {
            "architectures": ["YolosForObjectDetection"],
            "model_type": "yolos",
            "attention_probs_dropout_prob": 0.0,
            "auxiliary_loss": False,
            "bbox_cost": 5,
            "bbox_loss_coefficient": 5,
            "class_cost": 1,
            "eos_coefficient": 0.1,
            "giou_cost": 2,
            "giou_loss_coefficient": 2,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0,
            "hidden_size": 384,
            "image_size": [800, 1333],
            "initializer_range": 0.02,
            "intermediate_size": 1536,
            "layer_norm_eps": 1e-12,
            "num_attention_heads": 6,
            "num_channels": 3,
            "num_detection_tokens": 100,
            "num_hidden_layers": 12,
            "patch_size": 16,
            "qkv_bias": True,
            "torch_dtype": "float32",
            "transformers_version": "4.19.0.dev0",
            "use_mid_position_embeddings": False,
        },
        {
            "do_normalize": True,
            "do_resize": True,
            "feature_extractor_type": "YolosFeatureExtractor",
            "format": "coco_detection",
            **_IMAGENET,
            "size": {"shortest_edge": 800, "longest_edge": 1333},
        },
        COCO91,
        "model.safetensors",
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": [64, 96],
            "num_detection_tokens": 12,
        },
    ),
}

# --- RT-DETR lineage (converted with transformers >= 4.42; HF backbones, 80 COCO labels) -------------------------

_RTDETR_PRE = {
    "do_normalize": False,
    "do_pad": False,
    "do_rescale": True,
    "do_resize": True,
    "format": "coco_detection",
    "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "RTDetrImageProcessor",
    "image_std": [0.229, 0.224, 0.225],
    "resample": 2,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 640, "width": 640},
}
_RTDETR_SHRINK = {
    "d_model": 32,
    "encoder_hidden_dim": 32,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "decoder_in_channels": [32, 32, 32],
    "decoder_layers": 2,
    "num_queries": 12,
    "num_denoising": 8,
}
_RESNET_VD_SHRINK = {"embedding_size": 16, "hidden_sizes": [32, 64, 128, 256], "depths": [1, 1, 1, 1]}
_RESNET_VD_50 = {
    "model_type": "rt_detr_resnet",
    "depths": [3, 4, 6, 3],
    "hidden_sizes": [256, 512, 1024, 2048],
    "embedding_size": 64,
    "layer_type": "bottleneck",
    "downsample_in_bottleneck": False,
    "hidden_act": "relu",
    "out_features": ["stage2", "stage3", "stage4"],
    "out_indices": [2, 3, 4],
}

PUBLISHED.update(
    {
        # PekingU/rtdetr_r50vd: convert_rt_detr_original_pytorch_checkpoint_to_hf.py get_rt_detr_config("rtdetr_r50vd")
        # (RTDetrResNetConfig r50vd, encoder_in_channels [512, 1024, 2048], 6 decoder layers, 80 labels).
        "PekingU/rtdetr_r50vd": Published(
            "rt_detr",
            "r50vd",
            {
                "architectures": ["RTDetrForObjectDetection"],
                "model_type": "rt_detr",
                "backbone_config": _RESNET_VD_50,
                "encoder_in_channels": [512, 1024, 2048],
                "decoder_layers": 6,
                "use_timm_backbone": False,
                "backbone": None,
                "torch_dtype": "float32",
            },
            _RTDETR_PRE,
            COCO80,
            "model.safetensors",
            {
                **_RTDETR_SHRINK,
                "encoder_in_channels": [256, 512, 1024],
                "backbone_config": {**_RESNET_VD_SHRINK, "hidden_sizes": [64, 128, 256, 512]},
            },
        ),
        # PekingU/rtdetr_v2_r18vd: convert_rt_detr_v2_weights_to_hf.py (r18vd: basic blocks, hidden_sizes
        # [64, 128, 256, 512], encoder_in_channels [128, 256, 512], hidden_expansion 0.5, 3 decoder layers).
        "PekingU/rtdetr_v2_r18vd": Published(
            "rt_detr_v2",
            "r18vd",
            {
                "architectures": ["RTDetrV2ForObjectDetection"],
                "model_type": "rt_detr_v2",
                "backbone_config": {
                    **_RESNET_VD_50,
                    "depths": [2, 2, 2, 2],
                    "hidden_sizes": [64, 128, 256, 512],
                    "layer_type": "basic",
                },
                "encoder_in_channels": [128, 256, 512],
                "hidden_expansion": 0.5,
                "decoder_layers": 3,
                "torch_dtype": "float32",
            },
            _RTDETR_PRE,
            COCO80,
            "model.safetensors",
            # basic blocks need embedding_size == hidden_sizes[0] (no projection on the first shortcut), as in r18vd.
            {
                **_RTDETR_SHRINK,
                "encoder_in_channels": [64, 128, 256],
                "backbone_config": {**_RESNET_VD_SHRINK, "embedding_size": 32},
            },
        ),
    }
)

# --- 2025 families (config.json written by transformers' own conversion: class defaults + these fields) ---------

_HGNET_SHRINK = {
    "stem_channels": [3, 8, 8],
    "stage_in_channels": [8, 16, 32, 64],
    "stage_mid_channels": [8, 8, 16, 16],
    "stage_out_channels": [16, 32, 64, 64],
    "hidden_sizes": [16, 32, 64, 64],
    "stage_num_blocks": [1, 1, 1, 1],
    "stage_numb_of_layers": [2, 2, 2, 2],
    "embedding_size": 8,
}
_DFINE_SHRINK = {
    **_RTDETR_SHRINK,
    "encoder_in_channels": [32, 64, 64],
    "lqe_hidden_dim": 16,
    "backbone_config": _HGNET_SHRINK,
}

PUBLISHED.update(
    {
        # ustc-community/dfine-xlarge-coco (the D-FINE docs' and DFineConfig docstring's checkpoint):
        # convert_d_fine_original_pytorch_checkpoint_to_hf.py get_d_fine_config("dfine_x_coco"): HGNetV2-B5 stage
        # channels, 80 COCO labels, 6 decoder layers; the rest are DFineConfig defaults.
        "ustc-community/dfine-xlarge-coco": Published(
            "d_fine",
            "xlarge",
            {
                "architectures": ["DFineForObjectDetection"],
                "model_type": "d_fine",
                "decoder_layers": 6,
                "backbone_config": {
                    "model_type": "hgnet_v2",
                    "hidden_sizes": [256, 512, 1024, 2048],
                    "stem_channels": [3, 32, 64],
                    "stage_in_channels": [64, 128, 512, 1024],
                    "stage_mid_channels": [64, 128, 256, 512],
                    "stage_out_channels": [128, 512, 1024, 2048],
                    "out_features": ["stage2", "stage3", "stage4"],
                    "out_indices": [2, 3, 4],
                },
                "encoder_in_channels": [512, 1024, 2048],
            },
            _RTDETR_PRE,
            COCO80,
            "model.safetensors",
            _DFINE_SHRINK,
        ),
        # Intellindust/DEIMv2_HGNetv2_N_COCO (Deimv2Config docstring checkpoint; transformers-format copy used by the
        # modeling docstring: harshaljanjani/DEIMv2_HGNetv2_N_COCO_Transformers): Deimv2Config defaults, 80 labels.
        "Intellindust/DEIMv2_HGNetv2_N_COCO": Published(
            "deimv2",
            "hgnetv2-n",
            {
                "architectures": ["Deimv2ForObjectDetection"],
                "model_type": "deimv2",
                "backbone_config": {
                    "model_type": "hgnet_v2",
                    "out_features": ["stage2", "stage3", "stage4"],
                    "out_indices": [2, 3, 4],
                },
            },
            _RTDETR_PRE,
            COCO80,
            "model.safetensors",
            _DFINE_SHRINK,
        ),
        # AnnaZhang/lwdetr_small_60e_coco (LwDetrConfig docstring + LW-DETR docs): convert_lw_detr_to_hf.py
        # MODEL_CONFIGS["small"] + BACKBONE_CONFIGS["small"] (windowed ViT 192 x 10, out_indices [2, 4, 5, 9]),
        # 91 labels (COCO ids), group_detr 13. Image processor: DeformableDetrImageProcessor (auto mapping).
        "AnnaZhang/lwdetr_small_60e_coco": Published(
            "lw_detr",
            "small",
            {
                "architectures": ["LwDetrForObjectDetection"],
                "model_type": "lw_detr",
                "projector_scale_factors": [1.0],
                "num_queries": 300,
                "decoder_layers": 3,
                "decoder_self_attention_heads": 8,
                "decoder_cross_attention_heads": 16,
                "decoder_n_points": 2,
                "d_model": 256,
                "backbone_config": {
                    "model_type": "lw_detr_vit",
                    "image_size": 1024,
                    "hidden_size": 192,
                    "num_hidden_layers": 10,
                    "num_attention_heads": 12,
                    "window_block_indices": [0, 1, 3, 6, 7, 9],
                    "out_indices": [2, 4, 5, 9],
                },
            },
            {
                "do_normalize": True,
                "do_resize": True,
                "format": "coco_detection",
                **_IMAGENET,
                "image_processor_type": "DeformableDetrImageProcessor",
                "size": {"height": 640, "width": 640},
            },
            COCO91,
            "model.safetensors",
            {
                "d_model": 32,
                "decoder_ffn_dim": 64,
                "decoder_layers": 2,
                "decoder_self_attention_heads": 2,
                "decoder_cross_attention_heads": 2,
                "num_queries": 12,
                "backbone_config": {
                    "image_size": 64,
                    "hidden_size": 32,
                    "num_attention_heads": 2,
                    "num_hidden_layers": 4,
                    "window_block_indices": [0, 2],
                    "out_indices": [1, 2, 3, 4],
                },
            },
        ),
        # Roboflow/rf-detr-base (RfDetrConfig docstring + RF-DETR docs): RfDetrConfig defaults (DINOv2-S windowed
        # backbone, patch 14, out_indices [2, 5, 8, 11]), 91 labels. Image processor: RfDetrImageProcessor.
        "Roboflow/rf-detr-base": Published(
            "rf_detr",
            "base",
            {
                "architectures": ["RfDetrForObjectDetection"],
                "model_type": "rf_detr",
                "backbone_config": {
                    "model_type": "rf_detr_dinov2",
                    "hidden_size": 384,
                    "num_hidden_layers": 12,
                    "num_attention_heads": 6,
                    "patch_size": 14,
                    "out_indices": [2, 5, 8, 11],
                },
            },
            {
                "do_normalize": True,
                "do_resize": True,
                **_IMAGENET,
                "image_processor_type": "RfDetrImageProcessor",
                "size": {"height": 560, "width": 560},
            },
            COCO91,
            "model.safetensors",
            {
                "d_model": 32,
                "decoder_ffn_dim": 64,
                "decoder_layers": 2,
                "decoder_self_attention_heads": 2,
                "decoder_cross_attention_heads": 2,
                "num_queries": 12,
                "intermediate_size": 64,
                "backbone_config": {
                    "image_size": 56,
                    "hidden_size": 32,
                    "num_attention_heads": 2,
                    "num_hidden_layers": 4,
                    "window_block_indexes": [0, 2],
                    "out_indices": [1, 2, 3, 4],
                },
            },
        ),
    }
)


# --- writing the cache ------------------------------------------------------------------------------------------


def _merged(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def shrunk_config(hub_id: str) -> dict:
    """The config.json the test cache serves: the published dict, labels added, widths shrunk."""
    entry = PUBLISHED[hub_id]
    labels = {"id2label": entry.labels, "label2id": {name: int(i) for i, name in entry.labels.items()}}
    return _merged({**entry.config, **labels}, entry.shrink)


def _snapshot_dir(hf_home: Path, hub_id: str) -> tuple[Path, str]:
    # A fixed fake commit per id, so paths are stable across runs.
    sha = hashlib.sha1(hub_id.encode()).hexdigest()
    repo = Path(hf_home) / "hub" / ("models--" + hub_id.replace("/", "--"))
    return repo, sha


def _as_4x_state_dict(model, entry: Published) -> dict:
    """The full state dict under 4.x key names, with 4.x's head sharing (tied copies kept, sharing storage).

    transformers 5 ties `class_embed.1..L-1` to `class_embed.0` in every Deformable DETR variant; 4.x (and the
    original code) cloned them when `with_box_refine` is on, so those checkpoints hold L distinct class heads
    (two-stage: L + 1, shared with `model.decoder.class_embed`). Fresh seeded values stand in for the trained ones.
    """
    import torch
    from transformers.core_model_loading import revert_weight_conversion

    state = revert_weight_conversion(model, dict(model.state_dict()))
    if entry.model_type == "deformable_detr" and entry.config.get("with_box_refine"):
        generator = torch.Generator().manual_seed(1)
        heads = sorted({key.rsplit(".", 1)[0] for key in state if key.startswith("class_embed.")})
        for head in heads[1:]:
            for kind in ("weight", "bias"):
                fresh = torch.randn(state[f"{head}.{kind}"].shape, generator=generator) * 0.02
                state[f"{head}.{kind}"] = fresh
                if f"model.decoder.{head}.{kind}" in state:  # two-stage: the decoder shares the head
                    state[f"model.decoder.{head}.{kind}"] = fresh
    return state


def _dedup_shared(state: dict) -> dict:
    """Keep one name per shared tensor, the alphabetically first, as the Hub's safetensors conversion
    (safetensors `convert.py` `_remove_duplicate_names`, run by SFconvertbot on these repos) did."""
    groups: dict[tuple, list[str]] = {}
    for name, tensor in state.items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        groups.setdefault(ident, []).append(name)
    return {min(names): state[min(names)].contiguous() for names in groups.values()}


def write_cached_checkpoint(hf_home: Path, hub_id: str, *, seed: int = 0) -> Path:
    """Write one published checkpoint (random weights) into `hf_home`'s Hub cache; returns the snapshot folder."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForObjectDetection

    entry = PUBLISHED[hub_id]
    repo, sha = _snapshot_dir(hf_home, hub_id)
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / "config.json").write_text(json.dumps(shrunk_config(hub_id), indent=2, sort_keys=True))
    (snapshot / "preprocessor_config.json").write_text(json.dumps(entry.preprocessor, indent=2))

    config = AutoConfig.from_pretrained(snapshot)
    torch.manual_seed(seed)
    model = AutoModelForObjectDetection.from_config(config)
    state = {name: tensor.detach() for name, tensor in _as_4x_state_dict(model, entry).items()}
    if entry.weights == "model.safetensors":
        save_file(_dedup_shared(state), snapshot / "model.safetensors", metadata={"format": "pt"})
    if entry.weights == "pytorch_model.bin" or entry.also_bin:
        torch.save(state, snapshot / "pytorch_model.bin")  # as 4.x save_pretrained did: every tied copy kept
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    return snapshot


def write_hub_cache(hf_home: Path, ids=None, *, seed: int = 0) -> Path:
    """Write every (or the given) published checkpoint into `hf_home`; returns `hf_home`."""
    for hub_id in ids or PUBLISHED:
        write_cached_checkpoint(hf_home, hub_id, seed=seed)
    return Path(hf_home)


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    """An HF_HOME holding every published checkpoint (random weights); point HF_HOME at it and set HF_HUB_OFFLINE=1."""
    home = write_hub_cache(tmp_path_factory.mktemp("hf_home"))
    yield home
    shutil.rmtree(home, ignore_errors=True)  # ~0.8 GB (seven full-size timm ResNets): do not keep it per session


@pytest.fixture
def offline_hub(hub_cache, monkeypatch) -> Path:
    """HF_HOME = `hub_cache`, offline. huggingface_hub reads both at import, so its constants are patched too."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HOME", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub_cache


# --- Each family's tiny published structure, trained from random weights (memorisation tests, families benchmark) --

# One row per structure: every family, and Deformable DETR's three published variants.
FAMILY_MODELS = {
    "demo (deformable, box refine)": None,
    "deformable_detr": "SenseTime/deformable-detr",
    "deformable_detr box refine": "SenseTime/deformable-detr-with-box-refine",
    "deformable_detr two-stage": "SenseTime/deformable-detr-with-box-refine-two-stage",
    "detr": "facebook/detr-resnet-50",
    "conditional_detr": "microsoft/conditional-detr-resnet-50",
    "dab-detr": "IDEA-Research/dab-detr-resnet-50",
    "table-transformer": "microsoft/table-transformer-detection",
    "yolos": "hustvl/yolos-small",
    "rt_detr": "PekingU/rtdetr_r50vd",
    "rt_detr_v2": "PekingU/rtdetr_v2_r18vd",
    "d_fine": "ustc-community/dfine-xlarge-coco",
    "deimv2": "Intellindust/DEIMv2_HGNetv2_N_COCO",
    "lw_detr": "AnnaZhang/lwdetr_small_60e_coco",
    "rf_detr": "Roboflow/rf-detr-base",
}


def family_model_config(hub_id: str | None) -> dict:
    """A `model_config` for one row of FAMILY_MODELS: the published structure at the tests' widths
    (`shrunk_config`) less the keys transformers no longer reads, with the demo's 50 queries and, for the DETR-era
    timm ResNet-50s, the demo's small HF ResNet (configs/demo.yaml); None: the demo's own model."""
    import yaml

    demo = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "demo.yaml").read_text())["model_config"]
    if hub_id is None:
        return demo
    config = {k: v for k, v in shrunk_config(hub_id).items() if k not in ("id2label", "label2id", "architectures")}
    if config.get("use_timm_backbone") or (config.get("backbone") or "").startswith("resnet"):
        config.update(use_timm_backbone=False, backbone=None, use_pretrained_backbone=False,
                      backbone_config=demo["backbone_config"])
    config["num_detection_tokens" if config["model_type"] == "yolos" else "num_queries"] = demo["num_queries"]
    # Keys the published file keeps that transformers 5 no longer reads (e.g. DETR's max_position_embeddings): a
    # model_config holding them is an error (recipe.config.model_config), and the model is the same without them.
    from transformers import CONFIG_MAPPING

    from recipe.config.model_config import unread_model_config_keys

    for key in unread_model_config_keys(config, CONFIG_MAPPING[config["model_type"]]):
        del config[key]
    return config
