"""Synthetic "traffic-like scenes" detection dataset, used as the embedded demo.

Five classes drawn with PIL on a sky/road background, each distinct in both
colour and shape so that a tiny detector trained from scratch on CPU can learn
them in minutes. Boxes are written in COCO `xywh_abs` format (top-left x, y,
width, height in absolute pixels), clipped to the image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = ["car", "truck", "pedestrian", "traffic light", "traffic sign"]
_CLASS_PROBS = [0.32, 0.14, 0.20, 0.16, 0.18]
_P_EMPTY = 0.05
_P_BORDER_CUT = 0.13
_MAX_OBJECTS = 8


def _c(rng, lo, hi):
    """Random RGB colour with each channel drawn from [lo[i], hi[i]]."""
    return tuple(int(rng.integers(a, b + 1)) for a, b in zip(lo, hi))


def _draw_car(d, x, y, w, h, rng):
    body = _c(rng, (170, 15, 15), (230, 60, 50)) if rng.random() < 0.5 else _c(rng, (15, 45, 160), (50, 90, 230))
    r = max(2, round(h * 0.2))
    d.rounded_rectangle([x, y + 0.35 * h, x + w - 1, y + h - 1 - r], radius=max(1, h * 0.12), fill=body)
    d.rounded_rectangle([x + 0.2 * w, y, x + 0.8 * w - 1, y + 0.45 * h], radius=max(1, h * 0.1), fill=body)
    d.rectangle([x + 0.26 * w, y + 0.1 * h, x + 0.74 * w - 1, y + 0.35 * h], fill=(35, 45, 55))
    for cx in (x + 0.12 * w, x + 0.88 * w - 2 * r):
        d.ellipse([cx, y + h - 2 * r, cx + 2 * r, y + h - 1], fill=(20, 20, 20))


def _draw_truck(d, x, y, w, h, rng):
    cargo = _c(rng, (225, 140, 0), (255, 210, 40))
    r = max(2, round(h * 0.12))
    bottom = y + h - 1 - r
    # The cab side is random so the model cannot key on orientation alone.
    if rng.random() < 0.5:
        box, cab = (x, x + 0.72 * w), (x + 0.75 * w, x + w - 1)
    else:
        box, cab = (x + 0.28 * w, x + w - 1), (x, x + 0.25 * w)
    d.rectangle([box[0], y, box[1], bottom], fill=cargo)
    d.rectangle([cab[0], y + 0.4 * h, cab[1], bottom], fill=_c(rng, (200, 200, 205), (235, 235, 240)))
    d.rectangle([cab[0] + 0.2 * (cab[1] - cab[0]), y + 0.47 * h, cab[1] - 0.2 * (cab[1] - cab[0]), y + 0.62 * h],
                fill=(35, 45, 55))
    for fx in (0.1, 0.45, 0.8):
        cx = x + fx * w
        d.ellipse([cx, y + h - 2 * r, cx + 2 * r, y + h - 1], fill=(20, 20, 20))


def _draw_pedestrian(d, x, y, w, h, rng):
    shirt = _c(rng, (30, 140, 30), (80, 210, 80)) if rng.random() < 0.5 else _c(rng, (120, 30, 150), (180, 80, 220))
    hd = max(3, round(w * 0.6))
    hx = x + (w - hd) / 2
    d.ellipse([hx, y, hx + hd - 1, y + hd - 1], fill=_c(rng, (200, 150, 110), (235, 195, 160)))
    d.rectangle([x, y + hd, x + w - 1, y + 0.62 * h], fill=shirt)
    legw = max(1, w * 0.3)
    for lx in (x + 0.12 * w, x + 0.88 * w - legw):
        d.rectangle([lx, y + 0.62 * h, lx + legw - 1, y + h - 1], fill=(40, 40, 70))


def _draw_light(d, x, y, w, h, rng):
    d.rounded_rectangle([x, y, x + w - 1, y + h - 1], radius=max(1, w * 0.2), fill=_c(rng, (25, 25, 25), (45, 45, 45)))
    lit = int(rng.integers(3))
    on = [(255, 40, 40), (255, 190, 0), (40, 230, 80)][lit]
    dia = w * 0.64
    for i in range(3):
        cy = y + h * (i + 0.5) / 3
        d.ellipse([x + (w - dia) / 2, cy - dia / 2, x + (w + dia) / 2 - 1, cy + dia / 2 - 1],
                  fill=on if i == lit else (70, 70, 70))


def _draw_sign(d, x, y, w, h, rng):
    pw = max(2, round(w * 0.14))
    d.rectangle([x + (w - pw) / 2, y + w / 2, x + (w + pw) / 2 - 1, y + h - 1], fill=(150, 150, 150))
    if rng.random() < 0.5:
        d.polygon([(x, y + w - 1), (x + w - 1, y + w - 1), (x + (w - 1) / 2, y)], fill=(215, 20, 30))
        m = max(2, w * 0.22)
        d.polygon([(x + m, y + w - 1 - m / 2), (x + w - 1 - m, y + w - 1 - m / 2), (x + (w - 1) / 2, y + 1.8 * m)],
                  fill=(250, 250, 250))
    else:
        d.ellipse([x, y, x + w - 1, y + w - 1], fill=(245, 245, 245))
        d.ellipse([x + 1.5, y + 1.5, x + w - 2.5, y + w - 2.5], fill=(20, 70, 200))


_DRAW = [_draw_car, _draw_truck, _draw_pedestrian, _draw_light, _draw_sign]


def _background(rng, W, H):
    horizon = int(H * rng.uniform(0.3, 0.42))
    img = np.empty((H, W, 3), np.float32)
    sky_top = np.array(_c(rng, (90, 140, 200), (130, 180, 235)))
    sky_bot = np.array(_c(rng, (180, 200, 225), (215, 230, 245)))
    a = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = sky_top * (1 - a) + sky_bot * a
    road = float(rng.uniform(90, 125))
    b = np.linspace(0, 1, H - horizon)[:, None, None]
    img[horizon:] = road * (0.9 + 0.15 * b)
    pil = Image.fromarray(img.astype(np.uint8))
    d = ImageDraw.Draw(pil)
    # Desaturated buildings give clutter at the horizon without resembling any class.
    for _ in range(int(rng.integers(2, 7))):
        bw, bh = rng.uniform(0.05, 0.18) * W, rng.uniform(0.2, 0.7) * horizon
        bx = rng.uniform(-0.05, 1.0) * W
        g = int(rng.integers(100, 175))
        grey = _c(rng, (g - 8, g - 8, g - 5), (g + 8, g + 5, g + 8))
        d.rectangle([bx, horizon - bh, bx + bw, horizon - 1], fill=grey)
    vx = W * rng.uniform(0.35, 0.65)
    for lane_x in (-0.2 * W, 0.5 * W, 1.2 * W):
        phase = rng.uniform(0, 0.1)
        for t0 in np.arange(0.05 + phase, 1.0, 0.14):
            t1 = min(t0 + 0.07, 1.0)
            pts = [(vx + (lane_x - vx) * t, horizon + (H - horizon) * t) for t in (t0, t1)]
            d.line(pts, fill=(225, 225, 215), width=max(1, int(1 + 4 * t0)))
    return pil, horizon


def _sample_box(cls, rng, W, H, horizon):
    """Unclipped (x, y, w, h) with ground objects sized by their depth below the horizon."""
    k = H / 240
    t = rng.random() ** 0.7  # bias towards the near (bigger) half of the road
    jit = rng.uniform(0.85, 1.15)
    if cls == 0:
        w = (24 + 106 * t) * k * jit; h = w * rng.uniform(0.5, 0.6)
    elif cls == 1:
        w = (45 + 125 * t) * k * jit; h = w * rng.uniform(0.75, 0.9)
    elif cls == 2:
        h = (26 + 84 * t) * k * jit; w = h * rng.uniform(0.34, 0.42)
    elif cls == 3:
        w = rng.uniform(7, 17) * k; h = w * rng.uniform(2.5, 2.8)
    else:
        w = (10 + 24 * t) * k * jit; h = w * rng.uniform(2.0, 2.4)
    w, h = max(int(round(w)), 3), max(int(round(h)), 3)
    x = int(rng.integers(0, max(W - w, 0) + 1))
    if cls == 3:
        y = int(rng.integers(0, max(int(horizon + 0.3 * (H - horizon)) - h, 1)))
    else:
        y = int(horizon + 4 + t * (H - horizon - 4)) - h
    if rng.random() < _P_BORDER_CUT:
        frac = rng.uniform(0.15, 0.5)
        side = rng.choice(["left", "right", "top" if cls == 3 else "bottom"])
        if side == "left":
            x = -int(frac * w)
        elif side == "right":
            x = W - w + int(frac * w)
        elif side == "top":
            y = -int(frac * h)
        else:
            y = H - h + int(frac * h)
    return x, y, w, h


def _overlap_too_big(a, b):
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    sa, sb = a[2] * a[3], b[2] * b[3]
    # The min-area test also catches a small object hidden inside a big one, which IoU misses.
    return inter / (sa + sb - inter) > 0.3 or inter / min(sa, sb) > 0.5


def _make_image(rng, W, H, class_probs=_CLASS_PROBS):
    img, horizon = _background(rng, W, H)
    n = 0 if rng.random() < _P_EMPTY else int(rng.integers(1, _MAX_OBJECTS + 1))
    objs = []
    for _ in range(n * 20):
        if len(objs) == n:
            break
        cls = int(rng.choice(len(CATEGORIES), p=class_probs))
        x, y, w, h = _sample_box(cls, rng, W, H, horizon)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
        if x1 - x0 < 3 or y1 - y0 < 3 or (x1 - x0) * (y1 - y0) < 0.5 * w * h:
            continue
        clipped = (x0, y0, x1 - x0, y1 - y0)
        if any(_overlap_too_big(clipped, o[1]) for o in objs):
            continue
        objs.append((cls, clipped, (x, y, w, h)))
    # Far objects (higher bottom edge) first so near ones occlude them, as in a real scene.
    objs.sort(key=lambda o: o[2][1] + o[2][3])
    d = ImageDraw.Draw(img)
    for cls, _, (x, y, w, h) in objs:
        _DRAW[cls](d, x, y, w, h, rng)
    arr = np.asarray(img, np.float32) * rng.uniform(0.85, 1.15) + rng.normal(0, 3.0, (H, W, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), [(c, b) for c, b, _ in objs]


LARGE_FRAME_GRID = (4, 3)  # scenes across and down: 1280x720 frames of 320x240 scenes


def _make_large_image(rng, W, H, class_probs=_CLASS_PROBS, grid=LARGE_FRAME_GRID):
    """A frame of grid[0] x grid[1] scenes of W x H pixels side by side: each object at the scene's scale, so
    small in the frame. Boxes `xywh_abs` in the frame (an object cut by its scene's edge keeps its clipped box)."""
    frame = Image.new("RGB", (W * grid[0], H * grid[1]))
    objs = []
    for row in range(grid[1]):
        for col in range(grid[0]):
            scene, scene_objs = _make_image(rng, W, H, class_probs)
            frame.paste(scene, (col * W, row * H))
            objs += [(c, (x + col * W, y + row * H, w, h)) for c, (x, y, w, h) in scene_objs]
    return frame, objs


def _bdd_frames(images, anns):
    """The same scenes as a BDD100K frame list (current Scalabel schema, inclusive box2d: x2 = x + w - 1)."""
    frames = {img["id"]: {"name": img["file_name"], "labels": []} for img in images}
    for a in anns:
        x, y, w, h = a["bbox"]
        frames[a["image_id"]]["labels"].append({
            "id": str(a["id"]), "category": CATEGORIES[a["category_id"] - 1],
            "attributes": {"occluded": False, "truncated": False, "crowd": False},
            "box2d": {"x1": x, "y1": y, "x2": x + w - 1, "y2": y + h - 1}})
    return [f if f["labels"] else {**f, "labels": None} for f in frames.values()]


def _write_split(out, seed_seq, num, W, H, fmt="coco", class_probs=_CLASS_PROBS, large_frame=False):
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    per_class = {name: 0 for name in CATEGORIES}
    children = seed_seq.spawn(num)  # one stream per image: image i is the same whatever num is
    try:
        from tqdm import tqdm
        it = tqdm(range(num), desc=f"demo data {out.name}", delay=3)
    except ImportError:
        it = range(num)
    for i in it:
        make = _make_large_image if large_frame else _make_image
        img, objs = make(np.random.default_rng(children[i]), W, H, class_probs)
        name = f"{i + 1:06d}.jpg"
        img.save(out / "images" / name, quality=95)
        images.append({"id": i + 1, "file_name": name, "width": img.width, "height": img.height})
        for cls, (x, y, w, h) in objs:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, "segmentation": []})
            per_class[CATEGORIES[cls]] += 1
    coco = {"info": {"description": "synthetic traffic-like demo scenes"}, "licenses": [],
            "images": images, "annotations": anns,
            "categories": [{"id": i + 1, "name": n, "supercategory": "traffic"} for i, n in enumerate(CATEGORIES)]}
    if fmt == "bdd100k":
        (out / "annotations.json").write_text(json.dumps(_bdd_frames(images, anns)))
    else:
        (out / "annotations.json").write_text(json.dumps(coco))
    used = {a["image_id"] for a in anns}
    return {"images": num, "boxes": len(anns), "empty_images": num - len(used), "per_class": per_class}


def make_demo_dataset(output_dir, seed=0, num_train=400, num_val=50, image_size=(320, 240), fmt="coco", *,
                      rare_class: str | None = None, rare_fraction: float = 0.05, large_frame: bool = False) -> dict:
    """Write `output_dir/{train,val}/images/*.jpg` and `annotations.json` (COCO, boxes `xywh_abs`; or with
    fmt="bdd100k" a BDD100K frame list whose class names are BDD100K detection classes).

    `rare_class`: an imbalanced training split, where that class is drawn `rare_fraction` times as often (its share of
    the boxes cut to about that fraction; the others take its place, so no object goes unlabelled); the validation
    split keeps the usual mix, so the rare class is scored on as many boxes as before.

    `large_frame`: each image a LARGE_FRAME_GRID of `image_size` scenes (1280x720 at the default), objects at the
    scenes' scale: small objects in high-resolution frames, for tiled inference.

    Returns {"train": {...}, "val": {...}} with image, box, empty-image and per-class counts.
    """
    if fmt not in ("coco", "bdd100k"):
        raise ValueError(f"unsupported demo dataset format {fmt!r}; choose coco or bdd100k")
    W, H = int(image_size[0]), int(image_size[1])
    out = Path(output_dir)
    # Separate child streams so the val split does not change when num_train does.
    train_ss, val_ss = np.random.SeedSequence(seed).spawn(2)
    train_probs = _CLASS_PROBS
    if rare_class is not None:
        if rare_class not in CATEGORIES:
            raise ValueError(f"rare_class {rare_class!r} is not a demo class; choose one of {CATEGORIES}")
        weights = [p * (rare_fraction if name == rare_class else 1.0) for name, p in zip(CATEGORIES, _CLASS_PROBS)]
        train_probs = [w / sum(weights) for w in weights]
    return {"train": _write_split(out / "train", train_ss, num_train, W, H, fmt, train_probs, large_frame),
            "val": _write_split(out / "val", val_ss, num_val, W, H, fmt, large_frame=large_frame)}
