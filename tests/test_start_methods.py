"""Spawn-safe everywhere: training and `evaluate --model` with 2 dataloader workers under each start method
(`spawn` and `forkserver`: Python's defaults on macOS and, from 3.14, on Linux; `fork`) give the numbers of 0
workers. Everything a worker receives (the dataset transform, the collator) must pickle."""

import json
import subprocess
import sys

import pytest

from conftest import DEMO, ROOT

DRIVER = """
import multiprocessing, sys
multiprocessing.set_start_method(sys.argv[1], force=True)
from recipe.cli.main import evaluate_main, train_main
(train_main if sys.argv[2] == "train" else evaluate_main)(sys.argv[3:])
"""


def launch(method: str, command: str, argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", DRIVER, method, command, *argv], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def train(demo_dir, tmp_path, out, workers, method):
    launch(method, "train", [
        DEMO, "--train-img", f"{demo_dir}/train/images", "--train-ann", f"{demo_dir}/train/annotations.json",
        "--val-img", f"{demo_dir}/val/images", "--val-ann", f"{demo_dir}/val/annotations.json", "--subset", "8",
        "--output_dir", str(out), "--dataset_cache_dir", str(tmp_path / "cache"), "--dataloader_num_workers",
        str(workers), "--shortest_edges", "128", "--eval_size", "128", "--longest_edge", "160",
        "--per_device_train_batch_size", "2", "--max_steps", "3", "--logging_steps", "1", "--save_strategy", "no",
        "--eval_strategy", "no", "--seed", "3", "--report_to", "none"])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [r["loss"] for r in history if "loss" in r], json.loads((out / "eval_results.json").read_text())


def evaluate(demo_dir, tmp_path, model, out, workers, method):
    launch(method, "evaluate", ["--model", str(model), "--images", f"{demo_dir}/val/images", "--ann",
                                f"{demo_dir}/val/annotations.json", "--output", str(out), "--num-workers",
                                str(workers), "--batch-size", "3", "--dataset_cache_dir", str(tmp_path / "cache")])
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def without_workers(demo_dir, tmp_path_factory):
    """The reference: training and evaluation with 0 workers (model folder, losses, final metrics, evaluate's)."""
    tmp = tmp_path_factory.mktemp("w0")
    losses, metrics = train(demo_dir, tmp, tmp / "w0", 0, "spawn")
    assert len(losses) == 3
    return tmp / "w0", losses, metrics, evaluate(demo_dir, tmp, tmp / "w0", tmp / "e0.json", 0, "spawn")


@pytest.mark.slow
@pytest.mark.timeout(300)
# spawn in command 2 (its workers receive everything by pickling: the strictest); forkserver and fork in the
# extended tier (tests/test_train.py's same-seed test runs 2 forked workers in command 2 too).
@pytest.mark.parametrize("method", ["spawn", pytest.param("forkserver", marks=pytest.mark.extended),
                                    pytest.param("fork", marks=pytest.mark.extended)])
def test_training_and_evaluation_with_workers_under_every_start_method(method, without_workers, demo_dir, tmp_path):
    model, losses, metrics, scores = without_workers
    got_losses, got_metrics = train(demo_dir, tmp_path, tmp_path / method, 2, method)
    assert got_losses == pytest.approx(losses, rel=0, abs=1e-6), method
    assert got_metrics["eval_map"] == pytest.approx(metrics["eval_map"], rel=0, abs=1e-9), method
    got = evaluate(demo_dir, tmp_path, model, tmp_path / f"e-{method}.json", 2, method)
    keys = [k for k in scores if k.startswith(("map", "mar"))]
    assert keys and all(got[k] == pytest.approx(scores[k], rel=0, abs=1e-9) for k in keys), method
