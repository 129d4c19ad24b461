"""--push_to_hub: the final folder is uploaded once, after the final evaluation, and the token goes nowhere."""

import os
from pathlib import Path

import yaml
from huggingface_hub.utils import filter_repo_objects

from conftest import demo_args
from recipe.training.run import run

TOKEN = "hf_FAKEtokenDoNotLeak1234567890"


class FakeHfApi:
    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        FakeHfApi.calls.append(("create_repo", repo_id, self.token, kwargs))

    def upload_folder(self, *, folder_path, repo_id, ignore_patterns, **kwargs):
        files = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        uploaded = list(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        cards = {f: (Path(folder_path) / f).read_text() for f in uploaded if f == "README.md"}
        FakeHfApi.calls.append(("upload_folder", repo_id, self.token, uploaded, cards))
        return "https://huggingface.co/me/x/commit/0"


def test_push_uploads_the_final_folder_once_and_the_token_is_never_written(demo_dir, tmp_path, monkeypatch,
                                                                          capsys):
    import recipe.training.hub_push

    FakeHfApi.calls = []
    monkeypatch.setattr(recipe.training.hub_push, "HfApi", FakeHfApi)
    metrics = run(*demo_args(demo_dir, tmp_path, "--max_steps", "2", "--per_device_train_batch_size", "2",
                             "--save_strategy", "steps", "--save_steps", "1", "--push_to_hub", "true",
                             "--hub_model_id", "me/x", "--hub_token", TOKEN))
    kinds = [c[0] for c in FakeHfApi.calls]
    assert kinds == ["create_repo", "upload_folder"]  # once, at the end (no per-checkpoint pushes)
    _, repo, token, uploaded, cards = FakeHfApi.calls[1]
    assert repo == "me/x" and token == TOKEN
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "README.md", "eval_results.json"):
        assert name in uploaded, name
    assert not any(f.startswith("checkpoint-") or f == "training_args.bin" for f in uploaded)
    card = cards["README.md"]
    meta = yaml.safe_load(card.split("---")[1])
    values = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert values["map"] == round(metrics["eval_map"], 4) and len(values) == 12
    out = tmp_path / "out"
    assert any(p.name.startswith("checkpoint-") for p in out.iterdir())
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    assert TOKEN not in os.environ.get("HF_TOKEN", "")
