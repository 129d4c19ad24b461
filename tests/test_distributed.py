"""Several processes on a machine without GPUs: torchrun forms a gloo group (use_cpu), the numbers match."""

import json

import pytest

from conftest import ROOT, torchrun, write_json
from recipe.core.distributed import any_rank
from recipe.evaluation.coco_eval import METRIC_KEYS
from recipe.evaluation.evaluate import evaluate_checkpoint


@pytest.fixture
def trained(trained_demo):
    """conftest's 2-step demo run: its folder."""
    return trained_demo[0]


@pytest.fixture(scope="module")
def seven_images(demo_dir, tmp_path_factory):
    coco = json.loads((demo_dir / "val" / "annotations.json").read_text())
    keep = {img["id"] for img in coco["images"][:7]}
    coco["images"] = [i for i in coco["images"] if i["id"] in keep]
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    return write_json(tmp_path_factory.mktemp("seven") / "ann.json", coco)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_evaluate_exactly_like_one(trained, seven_images, demo_dir, tmp_path):
    # 7 images, 2 processes x batch 2: the last batch is padded with repeats that must not count.
    one = evaluate_checkpoint(str(trained), str(demo_dir / "val" / "images"), str(seven_images), batch_size=2,
                              num_workers=0, dataset_cache_dir=str(tmp_path / "c1"))
    proc = torchrun(str(ROOT / "scripts" / "evaluate.py"), "--model", str(trained), "--images",
                    str(demo_dir / "val" / "images"), "--ann", str(seven_images), "--batch-size", "2",
                    "--num-workers", "0", "--output", str(tmp_path / "two.json"),
                    "--predictions-out", str(tmp_path / "two_results.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two.json").read_text())
    assert (one["num_processes"], two["num_processes"]) == (1, 2)
    assert one["num_images"] == two["num_images"] == 7
    assert max(abs(one[k] - two[k]) for k in METRIC_KEYS) <= 1e-9
    results = json.loads((tmp_path / "two_results.json").read_text())
    assert len(results) == 7 * 100  # every image once, none twice
    assert proc.stdout.count("map=") == 1  # printed once, by the main process


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cache_is_built_once_by_the_main_process(demo_dir, tmp_path):
    script = tmp_path / "load.py"
    script.write_text(f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from recipe.config.load import parse_config
from recipe.data.builder import load_detection_dataset
args = parse_config(["--output_dir", {str(tmp_path / "o")!r}]).training
with args.main_process_first(desc="table"):
    data = load_detection_dataset({str(demo_dir / "train" / "annotations.json")!r},
                                  {str(demo_dir / "train" / "images")!r}, cache_dir={str(tmp_path / "cache")!r})
print(json.dumps({{"rank": args.process_index, "world": args.world_size, "from_cache": data.from_cache,
                  "rows": len(data.dataset)}}))
""")
    proc = torchrun(str(script))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                   key=lambda d: d["rank"])
    assert lines == [{"rank": 0, "world": 2, "from_cache": False, "rows": 24},
                     {"rank": 1, "world": 2, "from_cache": True, "rows": 24}]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_under_torchrun_uses_both_processes(demo_dir, tmp_path):
    proc = torchrun(str(ROOT / "scripts" / "train.py"), str(ROOT / "configs" / "demo.yaml"),
                    "--train-img", f"{demo_dir}/train/images", "--train-ann", f"{demo_dir}/train/annotations.json",
                    "--val-img", f"{demo_dir}/val/images", "--val-ann", f"{demo_dir}/val/annotations.json",
                    "--max_steps", "2", "--batch-size", "2", "--num-workers", "0", "--output-dir", str(tmp_path / "o"),
                    "--dataset_cache_dir", str(tmp_path / "cache"), "--shortest_edges", "128", "--eval_size", "128")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed run: 2 processes" in proc.stderr
    # Both processes took batches: 2 steps x 2 images x 2 processes of the 24 training scenes is a third of an epoch
    # (one process would have seen a sixth).
    state = json.loads((tmp_path / "o" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["log_history"][-1]["epoch"] == pytest.approx(8 / 24)
    # The final evaluation, split over the two processes, scored the saved model as one process scores its folder.
    metrics = json.loads((tmp_path / "o" / "eval_results.json").read_text())
    one = evaluate_checkpoint(str(tmp_path / "o"), f"{demo_dir}/val/images", f"{demo_dir}/val/annotations.json",
                              num_workers=0, dataset_cache_dir=str(tmp_path / "c1"))
    assert all(metrics[f"eval_{k}"] == pytest.approx(one[k], rel=0, abs=1e-9) for k in METRIC_KEYS), (metrics, one)


def test_an_entry_point_closes_the_process_group_it_ran_in(tmp_path):
    """`main_guard` (every console entry point) ends with the process group closed; a failing run exits 2 first."""
    import torch.distributed as dist

    from recipe.cli.main import main_guard
    from recipe.core.errors import USER_ERRORS

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    assert dist.is_initialized()
    with main_guard():
        dist.barrier()
    assert not dist.is_initialized()
    with pytest.raises(SystemExit) as exit_info, main_guard():
        raise USER_ERRORS[0]("bad input")
    assert exit_info.value.code == 2


@pytest.mark.slow
@pytest.mark.extended  # D-FINE under torchrun, 4 steps with two evaluations; command 2 keeps one two-process run each
@pytest.mark.timeout(600)  # of training and evaluation (above)
def test_two_processes_evaluate_and_save_one_identical_ema(demo_dir, tmp_path):
    # D-FINE from random weights trains its backbone's BatchNorms: each rank's running statistics are its own batch's
    # between DDP's buffer broadcasts, so the ranks' EMAs drift apart; every evaluation and save first takes rank 0's
    # (ModelEma.synchronize). Each rank records a digest of its EMA before and after that step.
    from published import FAMILY_MODELS, family_model_config

    config = json.dumps(family_model_config(FAMILY_MODELS["d_fine"]))
    script = tmp_path / "ema_ranks.py"
    script.write_text(f"""
import hashlib, json, sys
sys.path.insert(0, {str(ROOT)!r})
import torch.distributed as dist
from recipe.config.load import parse_config
from recipe.engine.ema import ModelEma
from recipe.training.run import run

def digest(ema):
    h = hashlib.sha256()
    for name in sorted(ema.shadow):
        h.update(name.encode()); h.update(ema.shadow[name].cpu().numpy().tobytes())
    return h.hexdigest()

original = ModelEma.synchronize
def recorded(self):
    before = digest(self)
    original(self)
    with open({str(tmp_path)!r} + f"/rank{{dist.get_rank()}}.jsonl", "a") as f:
        f.write(json.dumps({{"updates": self.updates, "before": before, "after": digest(self)}}) + "\\n")
ModelEma.synchronize = recorded
run(*parse_config([{str(ROOT / "configs" / "demo.yaml")!r}, "--model_config", {config!r},
    "--train-img", "{demo_dir}/train/images", "--train-ann", "{demo_dir}/train/annotations.json",
    "--val-img", "{demo_dir}/val/images", "--val-ann", "{demo_dir}/val/annotations.json",
    "--output_dir", {str(tmp_path / "o")!r}, "--dataset_cache_dir", {str(tmp_path / "cache")!r},
    "--dataloader_num_workers", "0", "--shortest_edges", "128", "--eval_size", "128", "--max_steps", "4",
    "--per_device_train_batch_size", "2", "--use_ema", "true", "--ema_decay", "0.9", "--ema_warmup_steps", "0",
    "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2"]))
""")
    proc = torchrun(str(script))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [[json.loads(line) for line in (tmp_path / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    # evaluation and checkpoint at step 2, the checkpoint at step 4, the final save and the final evaluation (the
    # Trainer's own evaluation at the last step is skipped: NoDuplicateFinalEvaluationCallback)
    assert [e["updates"] for e in ranks[0]] == [e["updates"] for e in ranks[1]] == [2, 2, 4, 4, 4]
    assert any(a["before"] != b["before"] for a, b in zip(*ranks))  # the drift is real ...
    assert all(a["after"] == b["after"] == a["before"] for a, b in zip(*ranks))  # ... and rank 0's EMA is everyone's


def test_any_rank_is_true_on_every_rank_when_one_rank_says_so(tmp_path):
    """A signal that reaches one rank stops every rank at the same step (InterruptCallback asks `any_rank`)."""
    script = tmp_path / "any_rank.py"
    script.write_text(f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import torch.distributed as dist
from recipe.core.distributed import any_rank
dist.init_process_group("gloo")
rank = dist.get_rank()
row = [rank, any_rank(rank == 1), any_rank(False), any_rank(True)]
open({str(tmp_path)!r} + f"/rank{{rank}}.json", "w").write(json.dumps(row))
dist.destroy_process_group()
""")
    proc = torchrun(str(script))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert rows == [[0, True, False, True], [1, True, False, True]]
    assert any_rank(True) is True and any_rank(False) is False  # no group: the flag itself
