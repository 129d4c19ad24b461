"""Rank families on the user's data: each family trained with its own recipe (its config: loss, matching, lr groups,
augmentation preset, resize, EMA) on the same data, scored by the same evaluation (`detr-evaluate --model`'s), exported
to ONNX (`detr-export`'s, parity checked) and timed with ONNX Runtime; one row per family.

`detr-compare [PLAN.yaml] [--families rt_detr d_fine ...] [--budget 30m] [--output_dir D] [training flags ...]`
(arguments and plan: `recipe/config/compare_plan.py`). Each family's run goes to `D/<family>` (with a time budget,
`--max_steps` from a timed probe); every family's arguments are parsed before the first training, so a bad flag
costs nothing.

Resumable: a family whose row (`D/<family>/compare_row.json`) exists is not trained again; a killed comparison run
again continues with the families left (the one killed mid-training starts over). Run folders are kept.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
import time
from pathlib import Path

from recipe.config.command_arguments import CompareArguments
from recipe.config.compare_plan import family_argv, parse_budget
from recipe.core.errors import ConfigError, ModelNotAvailable

logger = logging.getLogger("recipe")

ROW_FILE = "compare_row.json"
ROW_KEYS = ("family", "model_type", "map", "map_50", "map_small", "train_s", "steps", "parameters", "latency_ms")


# --- one family: train, evaluate, export, time ---

def compare(args: CompareArguments, families: dict[str, dict], training: list[str]) -> list[dict]:
    """Train, score, export and time each family not yet done; write the leaderboard. -> the rows, best map first."""
    from recipe.config.load import parse_config

    root = Path(args.output_dir)
    budget = parse_budget(args.budget)
    configs = {name: parse_config(family_argv(spec, training, root / name)) for name, spec in families.items()}
    for name, config in configs.items():  # every family must be scored on the same validation data
        if not (config.data.val_ann or config.data.dataset):
            raise ConfigError(f"family {name}: no validation set to score it on (give --val_img and --val_ann, or "
                              "--dataset)")
    rows = []
    for i, (name, spec) in enumerate(families.items()):
        done = root / name / ROW_FILE
        if done.is_file():
            logger.info("%s: done before (%s), not trained again", name, done)
            rows.append(json.loads(done.read_text()))
            continue
        logger.info("family %d/%d: %s (%s)", i + 1, len(families), name, spec["config"])
        rows.append(run_family(name, spec, training, root / name, budget, args))
        done.write_text(json.dumps(rows[-1], indent=1))
        write_leaderboard(root, rows)
    return write_leaderboard(root, rows)


def run_family(name: str, spec: dict, training: list[str], out: Path, budget: float | None,
               args: CompareArguments) -> dict:
    import recipe
    from recipe.config.load import parse_config

    extra, probe_s = [], None
    if budget is not None:
        probe_s = probe_seconds_per_step(spec, training, out / "probe", args.probe_steps)
        shutil.rmtree(out / "probe", ignore_errors=True)  # a timing, not a result
        extra = ["--max_steps", str(max(1, int(budget / probe_s)))]
    config = parse_config(family_argv(spec, training, out, extra))
    start = time.perf_counter()
    recipe.train(config)
    train_s = time.perf_counter() - start
    state = json.loads((out / "trainer_state.json").read_text())
    metrics = recipe.evaluate(str(out), source=validation_source(config), output=str(out / "compare_eval.json"),
                              num_workers=0)
    onnx, latency, frame, export_error = out / "model.onnx", None, None, None
    try:
        recipe.export(recipe.ExportArguments(model=str(out), output=str(onnx)))
    except ModelNotAvailable as e:  # no parity (or no ONNX translation): ranked by map, without a latency
        export_error = str(e)
        logger.warning("%s: %s", name, e)
    else:
        latency = round(onnx_latency_ms(onnx, images=args.latency_images, threads=args.latency_threads), 2)
        frame = json.loads((out / "model.onnx.json").read_text())["frame"]
    model_type = json.loads((out / "config.json").read_text())["model_type"]
    return {"family": name, "model_type": model_type, "config": spec["config"],
            **{k: round(metrics[k], 4) for k in ("map", "map_50", "map_small")},
            "train_s": round(train_s, 1), "steps": int(state["global_step"]),
            "probe_s_per_step": None if probe_s is None else round(probe_s, 4),
            "parameters": count_parameters(out), "latency_ms": latency, "latency_threads": args.latency_threads,
            "frame": frame, "run_folder": str(out), "onnx": None if export_error else str(onnx),
            "export_error": export_error}


def probe_seconds_per_step(spec: dict, training: list[str], out: Path, steps: int) -> float:
    """The median seconds of a step (the first left out) in a short run without evaluation or saving."""
    from transformers import TrainerCallback

    import recipe

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.start)

    timer = StepTimer()
    recipe.train(recipe.parse_config(family_argv(spec, training, out, [
        "--max_steps", str(steps), "--val_ann", "", "--val_img", "", "--eval_strategy", "no", "--save_strategy", "no",
        "--report_to", "none"])), callbacks=[timer])
    return statistics.median(timer.seconds[1:])


def validation_source(config):
    """The validation data of a parsed training config, as training reads it."""
    from recipe.training.data import source_of

    data = config.data
    if data.dataset:
        return source_of(data, split="validation")
    return source_of(data, annotation_file=data.val_ann, image_root=data.val_img, split="validation")


def count_parameters(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open is not iterable
            total += math.prod(f.get_slice(key).get_shape())
    return total


def onnx_latency_ms(onnx: Path, *, images: int, threads: int) -> float:
    """The median milliseconds of one batch-1 call of the graph at its frame (two warm-up calls first). The graph's
    cost does not depend on the pixel values; they are drawn once, seeded."""
    import numpy as np
    import onnxruntime

    meta = json.loads(Path(f"{onnx}.json").read_text())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    h, w = meta["frame"]
    feed = {"pixel_values": np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)}
    if "pixel_mask" in [i.name for i in session.get_inputs()]:
        feed["pixel_mask"] = np.ones((1, h, w), dtype=np.int64)
    times = []
    for i in range(images + 2):
        start = time.perf_counter()
        session.run(["logits", "pred_boxes"], feed)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


# --- the leaderboard ---

def write_leaderboard(root: Path, rows: list[dict]) -> list[dict]:
    """leaderboard.json (the rows), leaderboard.md (a table, best map first) and leaderboard.png (map against
    training time and against latency)."""
    rows = sorted(rows, key=lambda r: -r["map"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "leaderboard.json").write_text(json.dumps(rows, indent=1))
    lines = ["| family | model_type | map | map_50 | map_small | train s | steps | parameters | ONNX ms/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['model_type']} | {r['map']:.4f} | {r['map_50']:.4f} | {r['map_small']:.4f} | "
              f"{r['train_s']:.0f} | {r['steps']} | {r['parameters'] / 1e6:.2f}M | "
              f"{'-' if r['latency_ms'] is None else format(r['latency_ms'], '.1f')} |" for r in rows]
    lines += [f"\n{r['family']}: not exported ({r['export_error']})" for r in rows if r.get("export_error")]
    threads = sorted({r["latency_threads"] for r in rows})
    lines.append(f"\nmap: the saved model on the validation set (detr-evaluate --model); train s: the training run's "
                 f"wall time (model building, steps, final evaluation); latency: ONNX Runtime, batch 1, "
                 f"{'/'.join(map(str, threads))} thread(s), median of each graph's calls at its frame.")
    (root / "leaderboard.md").write_text("\n".join(lines) + "\n")
    plot_leaderboard(root / "leaderboard.png", rows)
    return rows


def plot_leaderboard(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "train_s", "training time (s)"), (axes[1], "latency_ms", "ONNX ms / image")):
        for r in (r for r in rows if r[key] is not None):
            ax.scatter(r[key], r["map"])
            ax.annotate(r["family"], (r[key], r["map"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("map")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_leaderboard(rows: list[dict], root: Path) -> None:
    print((root / "leaderboard.md").read_text())
    print(f"-> {root / 'leaderboard.md'}, leaderboard.json, leaderboard.png")
