"""What every benchmark's `--smoke` shares: a tiny demo data set and training flags that make a run take seconds.

`--smoke` checks that a benchmark still runs end to end and prints its figures (tests/test_benchmarks.py runs each
one's in a subprocess); its numbers measure nothing.
"""

from __future__ import annotations

from pathlib import Path

# Small frames, one or two optimizer steps, no worker processes, no in-training evaluation or checkpoints.
SMOKE_TRAINING = ["--shortest_edges", "64", "--longest_edge", "96", "--eval_size", "64",
                  "--dataloader_num_workers", "0", "--eval_strategy", "no", "--save_strategy", "no",
                  "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true"]


def tiny_demo(folder: Path) -> Path:
    """The demo data, 8 training and 4 validation images, into `folder` -> `folder`."""
    from recipe.data.synthetic import make_demo_dataset

    make_demo_dataset(folder, seed=0, num_train=8, num_val=4)
    return folder


def demo_data_flags(demo: Path, cache: Path | None = None) -> list[str]:
    """configs/demo.yaml's data flags pointed at `demo` (a make_demo_dataset folder)."""
    flags = [item for split in ("train", "val") for item in (
        f"--{split}-img", str(demo / split / "images"), f"--{split}-ann", str(demo / split / "annotations.json"))]
    return flags + (["--dataset_cache_dir", str(cache)] if cache else [])
