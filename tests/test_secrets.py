"""The Hub token never reaches the output folder (training_args.bin, checkpoints, card, reports) nor the logs."""

import logging

import torch

from conftest import demo_args
from recipe.training.run import run

FAKE = "hf_FAKEtokenForTheTest0123456789"


def test_hub_token_is_in_no_written_byte_and_no_log_line(demo_dir, tmp_path, capfd, caplog):
    caplog.set_level(logging.INFO)
    run(*demo_args(demo_dir, tmp_path, "--max_steps", "2", "--per_device_train_batch_size", "2",
                   "--save_strategy", "steps", "--save_steps", "1", "--save_total_limit", "5", "--hub_token", FAKE))
    out = tmp_path / "out"
    written = sorted(p for p in out.rglob("*") if p.is_file())
    bins = [p for p in written if p.name == "training_args.bin"]
    # The model folder and both checkpoints hold a pickle of the arguments: the files the leak was in.
    assert [str(p.relative_to(out)) for p in bins] == [
        "checkpoint-1/training_args.bin", "checkpoint-2/training_args.bin", "training_args.bin"]
    assert {"README.md", "data_report.json", "eval_results.json"} <= {p.name for p in written}
    leaks = [str(p.relative_to(out)) for p in written if FAKE.encode() in p.read_bytes()]
    assert leaks == []
    assert torch.load(bins[-1], weights_only=False).hub_token is None
    captured = capfd.readouterr()
    assert FAKE not in captured.out + captured.err + caplog.text
