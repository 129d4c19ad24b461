"""Shared fixtures and the suite's two tiers. Tests are offline, tiny and seeded; data from ../shared/data is skipped
when absent. CONTRIBUTING.md "Tests" says which tier a test goes in and what it may cost."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# Threads pinned before torch loads, for this process and every child it starts (scripts, torchrun, workers): float
# sums, and with them every stochastic figure a test checks, depend on the thread count (D-FINE's transfer arm scored
# map_50 0.129 on 2 threads and 0.093 on 1). 2 is the project's CI machine; RECIPE_TEST_THREADS measures another.
THREADS = int(os.environ.get("RECIPE_TEST_THREADS", "2"))
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import pytest  # noqa: E402  (after the thread pinning above)

# The training seed of the tests whose thresholds are stochastic (memorisation, transfer, preflight): 0 in the suite;
# their margins were set from seeds 0-2 on 1 and 2 threads (benchmarks/RESULTS.md "Test suite: margins").
SEED = int(os.environ.get("RECIPE_TEST_SEED", "0"))

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECIPE_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Every figure a stochastic test checks, one JSON line each (also in the JUnit XML via record_property), so drift
# across machines shows before a threshold fails.
FIGURES = Path(os.environ.get("RECIPE_TEST_FIGURES", ROOT / "outputs" / "test_figures.jsonl"))


# ---------------------------------------------------------------------------------------------- the two tiers

def pytest_addoption(parser):
    parser.addoption("--extended", action="store_true", default=False,
                     help="also run the extended tier (tests marked `extended`; RUN_EXTENDED=1 does the same)")


def extended_tier_on(config) -> bool:
    return config.getoption("--extended") or os.environ.get("RUN_EXTENDED", "") not in ("", "0")


def pytest_configure(config):
    import torch

    torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(config, items):
    """Tests marked `extended` are skipped, with the way to run them, unless the extended tier is asked for."""
    if extended_tier_on(config):
        return
    skip = pytest.mark.skip(reason="extended tier: run with --extended or RUN_EXTENDED=1 (CONTRIBUTING.md)")
    for item in items:
        if item.get_closest_marker("extended"):
            item.add_marker(skip)


# Each test's seconds (setup + call + teardown) and tier in the last run, written at the end of every run (the file
# holds that run only): tests/test_repo.py holds command 2's slow tests to their stated total with these figures when
# .ci/run asks it right after command 2, so CI checks its own run.
DURATIONS = Path(os.environ.get("RECIPE_TEST_DURATIONS", ROOT / "outputs" / "test_durations.json"))
_tiers: dict[str, dict] = {}
_seconds: dict[str, dict] = {}


def pytest_collection_finish(session):
    for item in session.items:
        _tiers[item.nodeid] = {"slow": item.get_closest_marker("slow") is not None,
                               "extended": item.get_closest_marker("extended") is not None}


def pytest_runtest_logreport(report):
    if report.nodeid not in _tiers:  # under pytest-xdist the controller collects nothing: read the report's marks
        _tiers[report.nodeid] = {tier: tier in report.keywords for tier in ("slow", "extended")}
    entry = _seconds.setdefault(report.nodeid, {"seconds": 0.0, "outcome": "passed"})
    entry["seconds"] += report.duration
    if report.outcome != "passed" and entry["outcome"] == "passed":
        entry["outcome"] = report.outcome


def pytest_sessionfinish(session):
    if not _seconds or hasattr(session.config, "workerinput"):
        return
    ran = {nodeid: {**_tiers.get(nodeid, {}), **entry, "seconds": round(entry["seconds"], 2), "threads": THREADS}
           for nodeid, entry in _seconds.items()}
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    DURATIONS.write_text(json.dumps(ran, indent=0, sort_keys=True))


@pytest.fixture
def record_figure(request, record_property):
    """record_figure(name=value, ...): the figures a stochastic threshold is checked against, in the JUnit XML and
    one JSON line in FIGURES (test id, threads, time)."""
    def record(**figures):
        for name, value in figures.items():
            record_property(name, value)
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        with FIGURES.open("a") as f:
            f.write(json.dumps({"test": request.node.nodeid, "threads": THREADS, "seed": SEED,
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}) + "\n")
    return record


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found (real test data lives in ../shared/data beside the checkout)")
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests must never reach the Hub: the machines that run them have no network beyond PyPI.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small synthetic demo dataset (seeded), shared by the tests that train."""
    from recipe.data.synthetic import make_demo_dataset

    out = tmp_path_factory.mktemp("demo")
    make_demo_dataset(out, seed=0, num_train=24, num_val=8)
    return out


# ----------------------------------------------- trained once per session, read by many tests (never written into)

@pytest.fixture(scope="session")
def trained_demo(demo_dir, tmp_path_factory):
    """The demo model trained 2 steps (batch 2, a log at every step, the final evaluation; TensorBoard where it is
    installed, as the test extra brings it): (output folder, final metrics). One run serves the run-output, predict,
    export, plots and distributed tests; each copies the folder before changing anything in it."""
    import importlib.util

    from recipe.training.run import run

    tmp = tmp_path_factory.mktemp("trained-demo")
    report = ["--report_to", "tensorboard"] if importlib.util.find_spec("tensorboard") else []
    metrics = run(*demo_args(demo_dir, tmp, "--max_steps", "2", "--per_device_train_batch_size", "2", *report))
    return tmp / "out", metrics


@pytest.fixture(scope="session")
def memorise_scenes(tmp_path_factory) -> Path:
    """The 8 demo scenes (seed 3) the memorisation runs train and are scored on: a folder with images/ and
    annotations.json."""
    from recipe.data.synthetic import make_demo_dataset

    root = tmp_path_factory.mktemp("memorise")
    make_demo_dataset(root, seed=3, num_train=8, num_val=1)
    return root / "train"


def memorise(name: str, scenes: Path, out: Path, *, overrides: dict | None = None, steps: int = 300,
             lr: str = "1e-3") -> dict:
    """Train published.FAMILY_MODELS[name] (its structure updated by `overrides`) on the 8 scenes for `steps` at `lr`
    (240 px, no augmentation, batch 4, constant lr after 20 warm-up steps, seed SEED) and evaluate it on them; -> the
    final metrics. The model folder is `out`."""
    from published import FAMILY_MODELS, family_model_config
    from recipe.config.load import parse_config
    from recipe.training.run import run

    config = json.dumps({**family_model_config(FAMILY_MODELS[name]), **(overrides or {})})
    return run(*parse_config([
        DEMO, "--model_config", config, "--train-img", str(scenes / "images"),
        "--train-ann", str(scenes / "annotations.json"), "--val-img", str(scenes / "images"),
        "--val-ann", str(scenes / "annotations.json"), "--output_dir", str(out), "--dataset_cache_dir",
        str(out.parent / "cache"), "--dataloader_num_workers", "0", "--shortest_edges", "240", "--eval_size", "240",
        "--hflip_prob", "0", "--color_jitter_prob", "0", "--max_steps", str(steps), "--per_device_train_batch_size",
        "4", "--learning_rate", lr, "--warmup_steps", "20", "--lr_scheduler_type", "constant_with_warmup",
        "--logging_steps", "50", "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
        "--seed", str(SEED)]))


@pytest.fixture(scope="session")
def memorised_demo(memorise_scenes, tmp_path_factory):
    """The demo's Deformable DETR (box refine) after memorising the 8 scenes: (model folder, final metrics). Its
    floor is checked in tests/test_memorise.py; the processor-size tests score it against transformers."""
    out = tmp_path_factory.mktemp("memorised-demo") / "out"
    return out, memorise("demo (deformable, box refine)", memorise_scenes, out)


@pytest.fixture(scope="session")
def memorised_mask_blind(memorise_scenes, tmp_path_factory):
    """D-FINE (the RT-DETR-style training path: mask-blind, square canvas, its own losses) after memorising the 8
    scenes: (model folder, final metrics). Its floor is checked in tests/test_memorise.py; predict's canvas test
    reads it."""
    out = tmp_path_factory.mktemp("memorised-d_fine") / "out"
    return out, memorise("d_fine", memorise_scenes, out)


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


DEMO = str(ROOT / "configs" / "demo.yaml")


def demo_args(demo_dir, tmp_path, *extra):
    """configs/demo.yaml on the `demo_dir` data, small images, no workers: `run(*demo_args(...))`."""
    from recipe.config.load import parse_config

    return parse_config([DEMO, "--train-img", f"{demo_dir}/train/images", "--train-ann",
                         f"{demo_dir}/train/annotations.json", "--val-img", f"{demo_dir}/val/images",
                         "--val-ann", f"{demo_dir}/val/annotations.json", "--output_dir", str(tmp_path / "out"),
                         "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers", "0",
                         "--shortest_edges", "128", "--eval_size", "128", "--logging_steps", "1", *extra])


def tiny_model_args(**overrides):
    """ModelArguments for the demo's tiny model config, from configs/demo.yaml."""
    import yaml

    from recipe.config.arguments import ModelArguments

    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["model_config"]
    return ModelArguments(model_config=json.dumps(cfg), **overrides)


# ---------------------------------------------- the demo data in other formats (tests/test_dataset_flag.py)

def demo_as_voc(demo_dir: Path, out: Path) -> Path:
    """The demo's COCO files as a Pascal VOC root (1-based inclusive corners: xmin = x + 1, xmax = x + w; exact for
    the demo's integer boxes). Image names are prefixed by the split; lists in ImageSets/Main/{train,val}.txt."""
    import shutil

    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        coco = json.loads((demo_dir / split / "annotations.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        by_image = {}
        for a in coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        stems = []
        for img in coco["images"]:
            stem = f"{split}_{Path(img['file_name']).stem}"
            stems.append(stem)
            shutil.copy(demo_dir / split / "images" / img["file_name"], out / "JPEGImages" / f"{stem}.jpg")
            objects = "".join(
                f"<object><name>{names[a['category_id']]}</name><difficult>{a['iscrowd']}</difficult><bndbox>"
                f"<xmin>{a['bbox'][0] + 1}</xmin><ymin>{a['bbox'][1] + 1}</ymin><xmax>{a['bbox'][0] + a['bbox'][2]}"
                f"</xmax><ymax>{a['bbox'][1] + a['bbox'][3]}</ymax></bndbox></object>"
                for a in by_image.get(img["id"], []))
            (out / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation><filename>{stem}.jpg</filename><size><width>{img['width']}</width><height>"
                f"{img['height']}</height><depth>3</depth></size>{objects}</annotation>")
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return out


def demo_as_yolo(demo_dir: Path, out: Path) -> Path:
    """The demo's COCO files as an Ultralytics dataset (data.yaml, images/{train,val}, labels/{train,val})."""
    import shutil

    for split in ("train", "val"):
        coco = json.loads((demo_dir / split / "annotations.json").read_text())
        order = [c["id"] for c in coco["categories"]]
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        lines = {img["id"]: [] for img in coco["images"]}
        sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
        for a in coco["annotations"]:
            (x, y, w, h), (width, height) = a["bbox"], sizes[a["image_id"]]
            lines[a["image_id"]].append(f"{order.index(a['category_id'])} {(x + w / 2) / width!r} "
                                        f"{(y + h / 2) / height!r} {w / width!r} {h / height!r}\n")
        for img in coco["images"]:
            shutil.copy(demo_dir / split / "images" / img["file_name"], out / "images" / split / img["file_name"])
            (out / "labels" / split / f"{Path(img['file_name']).stem}.txt").write_text("".join(lines[img["id"]]))
    names = [c["name"] for c in json.loads((demo_dir / "train" / "annotations.json").read_text())["categories"]]
    (out / "data.yaml").write_text(f"path: {out}\ntrain: images/train\nval: images/val\nnames: {json.dumps(names)}\n")
    return out / "data.yaml"


def demo_as_parquet(demo_dir: Path, out: Path) -> Path:
    """The demo's COCO files as a Hugging Face dataset repo folder in the transformers example's schema (cppe-5):
    data/{train,validation}-00000-of-00001.parquet with the JPEG bytes embedded."""
    from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value

    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("val", "validation")):
        coco = json.loads((demo_dir / split / "annotations.json").read_text())
        order = [c["id"] for c in coco["categories"]]
        features = Features({"image_id": Value("int64"), "image": Image(), "width": Value("int32"),
                             "height": Value("int32"), "objects": Sequence({
                                 "id": Value("int64"), "area": Value("float64"),
                                 "bbox": Sequence(Value("float32"), length=4),
                                 "category": ClassLabel(names=[c["name"] for c in coco["categories"]])})})
        objects = {img["id"]: {"id": [], "area": [], "bbox": [], "category": []} for img in coco["images"]}
        for a in coco["annotations"]:
            o = objects[a["image_id"]]
            o["id"].append(a["id"]), o["area"].append(a["area"]), o["bbox"].append(a["bbox"])
            o["category"].append(order.index(a["category_id"]))
        rows = {"image_id": [img["id"] for img in coco["images"]],
                "image": [{"bytes": (demo_dir / split / "images" / img["file_name"]).read_bytes(),
                           "path": img["file_name"]} for img in coco["images"]],
                "width": [img["width"] for img in coco["images"]], "height": [img["height"] for img in coco["images"]],
                "objects": [objects[img["id"]] for img in coco["images"]]}
        Dataset.from_dict(rows, features=features).to_parquet(str(out / "data" / f"{name}-00000-of-00001.parquet"))
    return out

from published import hub_cache, offline_hub  # noqa: E402,F401  (the local hub cache of published checkpoints)


def torchrun(*args, cwd=None):
    """`python -m torch.distributed.run --nproc_per_node 2 ARGS` on a free local port, one thread per process."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a free port on this machine for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), *args],
                          capture_output=True, text=True, env=env, cwd=cwd)


def one_line_error(capsys, main, argv) -> str:
    """`main(argv)` exits 2 with exactly one stderr line, "error: ..." (the recipe's one-line errors). -> the line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]
