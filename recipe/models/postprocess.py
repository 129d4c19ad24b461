"""Model outputs -> top-k detections per image in the original image's pixels (COCO protocol).

A detections tensor is [B, K, 6] float32; its columns are named below, never indexed by a bare number.
"""

from __future__ import annotations

import torch

from recipe.core.boxes import cxcywh_norm_to_xywh_abs
from recipe.core.stage_timer import stage

# Columns of a detections tensor [B, K, 6]: score, contiguous label, box `xywh_abs` (x, y, w, h).
DET_SCORE, DET_LABEL, DET_BOX = 0, 1, slice(2, 6)


def postprocess_detections(logits: torch.Tensor, pred_boxes: torch.Tensor, orig_sizes_hw: torch.Tensor, *,
                           top_k: int = 100, softmax: bool = False) -> torch.Tensor:
    """Top-k detections per image over queries x classes.

    logits [B, Q, C] (C + 1 with `softmax`: the last class is "no object"), pred_boxes [B, Q, 4]
    `cxcywh_norm`, orig_sizes_hw [B, 2] -> [B, K, 6] rows (score, label, x, y, w, h) with boxes `xywh_abs`
    in the original image, K = min(top_k, Q x C), sorted by score. With sigmoid one query may give several
    labels (as Deformable DETR's own post-processing); with softmax too (the COCO protocol keeps the top k).
    """
    with stage("postprocess"):
        logits, pred_boxes = logits.float(), pred_boxes.float()
        prob = logits.softmax(-1)[..., :-1] if softmax else logits.sigmoid()
        batch, queries, classes = prob.shape
        k = min(top_k, queries * classes)
        scores, index = prob.reshape(batch, -1).topk(k, dim=1)
        query, label = index // classes, index % classes
        boxes = pred_boxes.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
        boxes = cxcywh_norm_to_xywh_abs(boxes, orig_sizes_hw)
        return torch.cat([scores.unsqueeze(-1), label.unsqueeze(-1).float(), boxes], dim=-1)
