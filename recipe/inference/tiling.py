"""Tiled inference (SAHI's standard + sliced prediction): the windows of an image, tile detections moved back into
the image, and their merge. Pure numpy / torchvision functions; predict.py runs the model over the windows.

Detections are arrays [K, 6] (`postprocess.DET_*`: score, label, box `xywh_abs`).

The rule at tile borders: a window's detection whose box comes within `EDGE_FRACTION` of the tile of an INNER edge
of its window (an edge inside the image, not on its border) may be an object the window cuts. It is kept only if no
detection of its class that is not cut covers half of it or more (intersection over the cut box's own area, as SAHI's
IOS match); the survivors join the others in the class-wise merge. An object up to `overlap * tile` wide lies whole in
one of the windows that share its border, and the full-frame pass sees larger ones whole.
(Idea and terms from SAHI, Akyon et al. 2022, github.com/obss/sahi.)
"""

from __future__ import annotations

import numpy as np

from recipe.models.postprocess import DET_BOX, DET_LABEL, DET_SCORE

EDGE_FRACTION = 0.02  # of the tile: how close to an inner window edge a box counts as cut
COVER = 0.5  # a cut box this much inside a whole box of its class is that object's part


def tile_windows(height: int, width: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """-> windows (x0, y0, x1, y1) in image pixels (`xyxy_abs`, exclusive ends), row by row: `tile` px wide and
    high, stepping round(tile * (1 - overlap)) px, the last row and column flush with the image's edge. An image
    side shorter than the tile is one window of that side."""
    step = max(1, round(tile * (1 - overlap)))

    def starts(size: int) -> list[int]:
        if size <= tile:
            return [0]
        return list(range(0, size - tile, step)) + [size - tile]

    return [(x0, y0, min(x0 + tile, width), min(y0 + tile, height))
            for y0 in starts(height) for x0 in starts(width)]


def shift_detections(dets: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """Detections [K, 6] with boxes `xywh_abs` in the window's pixels -> the same, boxes `xywh_abs` in the image's."""
    out = np.array(dets, dtype=np.float32, copy=True).reshape(-1, 6)
    out[:, DET_BOX.start] += window[0]
    out[:, DET_BOX.start + 1] += window[1]
    return out


def cut_by_window(dets: np.ndarray, window: tuple[int, int, int, int], height: int, width: int,
                  tile: int) -> np.ndarray:
    """-> bool [K]: boxes (`xywh_abs` in image pixels) within EDGE_FRACTION * tile of an inner edge of `window`."""
    near = EDGE_FRACTION * tile
    x0, y0, x1, y1 = window
    bx0, by0 = dets[:, DET_BOX.start], dets[:, DET_BOX.start + 1]
    bx1, by1 = bx0 + dets[:, DET_BOX.start + 2], by0 + dets[:, DET_BOX.start + 3]
    return (((x0 > 0) & (bx0 <= x0 + near)) | ((y0 > 0) & (by0 <= y0 + near))
            | ((x1 < width) & (bx1 >= x1 - near)) | ((y1 < height) & (by1 >= y1 - near)))


def xyxy_of(dets: np.ndarray) -> np.ndarray:
    """Detections [K, 6] -> boxes [K, 4] `xyxy_abs`."""
    box = dets[:, DET_BOX]
    return np.concatenate([box[:, :2], box[:, :2] + box[:, 2:]], axis=1)


def cover_fraction(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """Boxes [A, 4], [B, 4] `xyxy_abs` -> [A, B]: the area of each inner box that lies in each outer box, over the
    inner box's own area (0 for an empty inner box)."""
    lo = np.maximum(inner[:, None, :2], outer[None, :, :2])
    hi = np.minimum(inner[:, None, 2:], outer[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = (inner[:, 2:] - inner[:, :2]).prod(-1)[:, None]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def drop_covered_cuts(dets: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """The border rule (module docstring): cut detections lying COVER or more inside a whole detection of their
    class are dropped. -> the remaining detections [K', 6], whole ones first."""
    whole, parts = dets[~cut], dets[cut]
    if len(parts) and len(whole):
        cover = cover_fraction(xyxy_of(parts), xyxy_of(whole))
        same = parts[:, DET_LABEL, None] == whole[None, :, DET_LABEL]
        parts = parts[~((cover >= COVER) & same).any(1)]
    return np.concatenate([whole, parts]).reshape(-1, 6)


def nms_clusters(dets: np.ndarray, iou: float) -> list[np.ndarray]:
    """Greedy class-wise NMS: -> for each kept detection (best score first), the indices of its cluster (itself
    first, then the detections it suppresses: same label, IoU above `iou` with it, not yet clustered)."""
    import torch
    from torchvision.ops import batched_nms, box_iou

    boxes = torch.from_numpy(xyxy_of(dets).astype(np.float32))
    scores = torch.from_numpy(dets[:, DET_SCORE].astype(np.float32))
    labels = torch.from_numpy(dets[:, DET_LABEL].astype(np.int64))
    keep = batched_nms(boxes, scores, labels, iou).numpy()
    overlaps = box_iou(boxes[keep], boxes).numpy() > iou
    same = dets[keep, DET_LABEL, None] == dets[None, :, DET_LABEL]
    taken = np.zeros(len(dets), bool)
    taken[keep] = True
    clusters = []
    for row, k in enumerate(keep):
        members = np.flatnonzero(overlaps[row] & same[row] & ~taken)
        taken[members] = True
        clusters.append(np.concatenate([[k], members]).astype(int))
    return clusters


def fuse(dets: np.ndarray, members: np.ndarray) -> np.ndarray:
    """One weighted-fusion box: the members' `xyxy_abs` corners averaged with their scores as weights, the best
    member's score and label (Solovyev et al. 2021's WBF, with the best score rather than the mean). -> [6]."""
    group = dets[members]
    weights = group[:, DET_SCORE:DET_SCORE + 1]
    corners = (xyxy_of(group) * weights).sum(0) / max(float(weights.sum()), 1e-12)
    return np.array([group[0, DET_SCORE], group[0, DET_LABEL], corners[0], corners[1],
                     corners[2] - corners[0], corners[3] - corners[1]], dtype=np.float32)


def merge_detections(parts: list[np.ndarray], cuts: list[np.ndarray] | None = None, *, iou: float = 0.5,
                     method: str = "nms", top_k: int = 100) -> np.ndarray:
    """The detections of an image's windows (and full frame), each [K_i, 6] with boxes `xywh_abs` in image pixels,
    with their `cut_by_window` masks (None: nothing cut) -> [K, 6], K <= top_k, best score first.

    The border rule first, then class-wise: "nms" keeps the best of each cluster of boxes overlapping by IoU above
    `iou`; "wbf" replaces it by the cluster's weighted fusion (`fuse`)."""
    if method not in ("nms", "wbf"):
        raise ValueError(f"merge method {method!r}: choose nms or wbf")
    dets = np.concatenate([np.asarray(p, np.float32).reshape(-1, 6) for p in parts] or [np.zeros((0, 6))])
    cut = (np.concatenate([np.asarray(c, bool) for c in cuts]) if cuts is not None
           else np.zeros(len(dets), bool))
    dets = drop_covered_cuts(dets.astype(np.float32), cut)
    if not len(dets):
        return np.zeros((0, 6), np.float32)
    clusters = nms_clusters(dets, iou)[:top_k]
    if method == "nms":
        return dets[[c[0] for c in clusters]]
    return np.stack([fuse(dets, c) for c in clusters])
