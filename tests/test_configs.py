"""The one parser: every config parses, YAML < command line, aliases, and user errors as one exact line."""

import configparser
import copy
import importlib
import json
import pickle
import subprocess
import sys

import pytest

from conftest import ROOT
from recipe.cli.main import evaluate_main, train_main
from recipe.config.arguments import DataArguments, EvalArguments
from recipe.config.load import parse_command, parse_config, parse_evaluate_args
from recipe.config.parser import parse_args
from recipe.core.errors import ConfigError

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_parses(path):
    data_args, model_args, train_args, eval_args = parse_config([str(path)])
    assert train_args.remove_unused_columns is False and train_args.batch_eval_metrics is True
    assert eval_args == EvalArguments()  # no config changes the COCO protocol


def test_yaml_is_default_and_command_line_overrides():
    import yaml

    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    config = parse_config([str(ROOT / "configs" / "demo.yaml"), "--learning_rate", "0.5"])
    assert config.training.learning_rate == 0.5 != demo["learning_rate"]  # command line over YAML
    assert config.data.eval_size == demo["eval_size"] != 800  # YAML over the dataclass default
    assert config.model.auxiliary_loss is None and "auxiliary_loss" not in demo  # the family default (on)


def test_original_dashed_flags_are_accepted():
    data_args, model_args, train_args, eval_args = parse_config([
        "--train-img", "ti", "--train-ann", "ta", "--val-img", "vi", "--val-ann", "va", "--num-epochs", "3",
        "--batch-size", "4", "--num-workers", "0", "--amp", "--pretrained", "some/model", "--offline",
        "--score-threshold", "0.05", "--subset", "100", "--output-dir", "outputs/x"])
    assert (data_args.train_img, data_args.train_ann, data_args.val_img, data_args.val_ann) == ("ti", "ta", "vi", "va")
    assert (train_args.num_train_epochs, train_args.per_device_train_batch_size,
            train_args.per_device_eval_batch_size, train_args.dataloader_num_workers) == (3, 4, 4, 0)
    assert train_args.amp is True and model_args.offline is True
    assert model_args.model_name_or_path == "some/model" and eval_args.score_threshold == 0.05
    assert data_args.subset == 100 and train_args.output_dir == "outputs/x"


def test_recipe_defaults_follow_the_original_deformable_detr():
    from recipe.models.families import FAMILIES, config_overrides, loss_weights

    _, model_args, train_args, eval_args = parse_config([])
    family = FAMILIES["deformable_detr"]
    assert config_overrides(family, model_args) == {"auxiliary_loss": True, "class_cost": 2, "bbox_cost": 5,
                                                    "giou_cost": 2}
    assert loss_weights(family, model_args)["loss_ce"] == 2.0
    assert (family.backbone_lr_multiplier, model_args.linear_proj_lr_multiplier) == (0.1, 0.1)
    assert (train_args.learning_rate, train_args.weight_decay, train_args.max_grad_norm) == (2e-4, 1e-4, 0.1)
    assert train_args.eval_do_concat_batches is False
    assert (eval_args.score_threshold, eval_args.top_k, eval_args.metric_backend) == (0.0, 100, "pycocotools")


def test_redeclared_training_fields_keep_the_transformers_defaults():
    from transformers import TrainingArguments

    ours, theirs = parse_config([]).training, TrainingArguments(output_dir="x")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "num_train_epochs",
                 "gradient_accumulation_steps"):
        assert getattr(ours, name) == getattr(theirs, name), name


def test_evaluate_takes_its_original_flags_and_yaml(tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("top_k: 50\nbox_convention: exclusive\nbdd_image_size: [640, 360]\n")
    data, model, eval_args, script, tile = parse_evaluate_args([
        str(cfg), "--model", "m", "--images", "i", "--ann", "a.json", "--batch-size", "2", "--num-workers", "0",
        "--metric-backend", "faster_coco_eval", "--score-threshold", "0.1", "--format", "bdd100k",
        "--output", str(tmp_path / "m.json"), "--predictions-out", "r.json", "--predictions-format", "bdd100k",
        "--tile", "320", "--tile_overlap", "0.25", "--tile_merge", "wbf"])
    assert (tile.tile, tile.tile_overlap, tile.tile_merge, tile.tile_full_frame) == (320, 0.25, "wbf", True)
    assert (model.model_name_or_path, data.val_img, data.val_ann, data.annotation_format) == ("m", "i", "a.json",
                                                                                              "bdd100k")
    assert (eval_args.top_k, eval_args.score_threshold, eval_args.metric_backend) == (50, 0.1, "faster_coco_eval")
    assert (data.box_convention, data.bdd_image_size) == ("exclusive", [640, 360])
    assert (script.per_device_eval_batch_size, script.dataloader_num_workers) == (2, 0)
    assert (script.predictions_out, script.predictions_format) == ("r.json", "bdd100k")
    data, model, _, script, tile = parse_evaluate_args(["--gt", "g.json", "--predictions", "p.json"])
    assert not tile.on
    assert (data.val_ann, script.predictions, model.model_name_or_path) == ("g.json", "p.json", None)


def test_parse_args_builds_any_set_of_dataclasses(tmp_path):
    cfg = tmp_path / "d.yaml"
    cfg.write_text("subset: 5\n")
    (data,) = parse_args([str(cfg), "--eval-size", "64"], (DataArguments,))
    assert (data.subset, data.eval_size) == (5, 64)
    other = tmp_path / "e.yaml"
    other.write_text("top_k: 3\n")  # an EvalArguments key: unknown to a parser of DataArguments only
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['top_k'\]"):
        parse_args([str(other)], (DataArguments,))
    assert len(parse_command([], "detr-evaluate")) == 5  # data, model, eval, script, tile


def test_unknown_yaml_key_is_an_error(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("learning_rate: 1.0e-4\nlerning_rate: 2\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lerning_rate'\]"):
        parse_config([str(cfg)])


def test_unknown_flag_is_an_error_and_abbreviations_are_not_guessed():
    with pytest.raises(ConfigError, match="--no-such-flag"):
        parse_config(["--no-such-flag", "1"])
    with pytest.raises(ConfigError, match="unknown argument"):
        parse_config(["--learning", "0.1"])  # argparse would take it for --learning_rate


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# (argv, the exact message after "error: "), {tmp} is the test's tmp_path. All are caught while parsing: the data
# paths do not exist, so an error about them (or a model download) would mean the check came too late.
TRAIN_ERRORS = [
    (["--batch-size", "-2"], "per_device_train_batch_size must be in [1, inf), got -2"),
    (["--subset", "0"], "subset must be in [1, inf), got 0"),
    (["--metric_backend", "pycocotool"], "metric_backend: 'pycocotool' is not one of pycocotools, faster_coco_eval"),
    (["--annotation_format", "yolo"], "annotation_format: 'yolo' is not one of auto, coco, bdd100k"),
    (["--image_check", "full"], "image_check: 'full' is not one of decode, header, exists"),
    (["configs/demo.yaml", "--class_cost", "2.5"],
     "class_cost must be a whole number for deformable_detr models (DeformableDetrConfig declares it int), got 2.5"),
    (["--model_config", "{bad"],
     "model_config is not valid JSON (Expecting property name enclosed in double quotes at character 1): '{bad'"),
    (["--model_config", "[1, 2]"], "model_config must be a JSON object of config fields, got '[1, 2]'"),
    (["--model_config", '{"model_type": "detr2"}'],
     "model_config: unknown model_type 'detr2' (transformers has no such config)"),
    (["--val-ann", "{tmp}/val.json"], "val_ann is set but val_img is not: give both the validation image folder "
                                      "(--val-img) and its annotation file (--val-ann), or neither"),
    (["--val-img", "{tmp}/images"], "val_img is set but val_ann is not: give both the validation image folder "
                                    "(--val-img) and its annotation file (--val-ann), or neither"),
    (["--output-dir", "{tmp}/afile"],
     "output_dir {tmp}/afile is a file; give a folder (it receives the model, checkpoints and reports)"),
    (["--hflip_prob", "1.5"], "hflip_prob must be in [0, 1], got 1.5"),
    (["--learning_rate", "0"], "learning_rate must be in (0, inf), got 0.0"),
    (["--learning_rate", "fast"], "argument --learning_rate/--learning-rate: invalid float value: 'fast'"),
    (["--num-epochs", "0"], "num_train_epochs must be in (0, inf), got 0.0"),
    (["--top_k", "0"], "top_k must be in [1, inf), got 0"),
    (["--bdd_image_size", "1280"], "bdd_image_size takes 2 values, got 1: [1280]"),
    (["--shortest_edges", "0", "128"], "shortest_edges must be in [1, inf), got 0"),
    (["--hub_tokn", "hf_secret"], "unknown argument(s) --hub_tokn ***; see `detr-train --help`"),
    (["--batch-size"], "--batch-size needs a value"),
    (["{tmp}/missing.yaml"], "{tmp}/missing.yaml: config file not found"),
    (["{tmp}/list.yaml"], "{tmp}/list.yaml: a config file is a mapping of field: value"),
    (["{tmp}/float.yaml"], "per_device_train_batch_size takes int values, got 2.5"),
    (["{tmp}/strbool.yaml"], "auxiliary_loss takes bool values, got 1"),
    (["{tmp}/edges.yaml"], "shortest_edges takes a list of int, got 512"),
]


@pytest.fixture
def error_files(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    _write(tmp_path, "list.yaml", "- a\n- b\n")
    _write(tmp_path, "float.yaml", "per_device_train_batch_size: 2.5\n")
    _write(tmp_path, "strbool.yaml", "auxiliary_loss: 1\n")
    _write(tmp_path, "edges.yaml", "shortest_edges: 512\n")
    _write(tmp_path, "train.yaml", "hflip_prob: 0.5\n")
    return tmp_path


def _run_main(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(("argv", "message"), TRAIN_ERRORS, ids=[" ".join(a)[:40] for a, _ in TRAIN_ERRORS])
def test_train_user_errors_are_one_line(argv, message, error_files, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    tmp = str(error_files)
    code, err = _run_main(train_main, [a.replace("{tmp}", tmp) for a in argv], capsys)
    assert (code, err) == (2, ["error: " + message.replace("{tmp}", tmp)])


EVALUATE_ERRORS = [
    (["--gt", "g.json"], "give either --gt and --predictions, or --model with --dataset (or --images and --ann)"),
    (["--model", "m", "--ann", "a.json"],
     "give either --gt and --predictions, or --model with --dataset (or --images and --ann)"),
    (["--gt", "g.json", "--predictions", "p.json", "--model", "m"],
     "give either --gt and --predictions, or --model with --dataset (or --images and --ann)"),
    (["--gt", "g.json", "--predictions", "p.json", "--output", "{tmp}/folder"],
     "output {tmp}/folder is a folder; give a file name (e.g. {tmp}/folder/metrics.json)"),
    (["--model", "m", "--images", "i", "--ann", "a", "--predictions-out", "{tmp}/folder"],
     "predictions_out {tmp}/folder is a folder; give a file name (e.g. {tmp}/folder/metrics.json)"),
    (["--gt", "g.json", "--predictions", "p.json", "--metric-backend", "cocoapi"],
     "metric_backend: 'cocoapi' is not one of pycocotools, faster_coco_eval"),
    (["--gt", "g.json", "--predictions", "p.json", "--format", "kitti"],
     "annotation_format: 'kitti' is not one of auto, coco, bdd100k"),
    (["--model", "m", "--images", "i", "--ann", "a", "--batch-size", "0"],
     "per_device_eval_batch_size must be in [1, inf), got 0"),
    (["--model", "m", "--images", "i", "--ann", "a", "--predictions-format", "voc"],
     "predictions_format: 'voc' is not one of coco, bdd100k"),
    (["--model", "m", "--images", "i", "--ann", "a", "--learning_rate", "1"],
     "unknown argument(s) --learning_rate 1; see `detr-evaluate --help`"),
    # Training's data and model options are not evaluate's: an error, not a silent no-op.
    (["--model", "m", "--images", "i", "--ann", "a", "--no_aug_epochs", "2", "--train-img", "t"],
     "--no_aug_epochs, --train-img: not read by detr-evaluate (an option of training or of another command); see "
     "`detr-evaluate --help` for its options"),
    (["{tmp}/train.yaml", "--gt", "g.json", "--predictions", "p.json"],
     "{tmp}/train.yaml: key(s) ['hflip_prob'] not read by detr-evaluate; see `detr-evaluate --help`"),
]


@pytest.mark.parametrize(("argv", "message"), EVALUATE_ERRORS, ids=[" ".join(a)[:40] for a, _ in EVALUATE_ERRORS])
def test_evaluate_user_errors_are_one_line(argv, message, error_files, capsys):
    tmp = str(error_files)
    code, err = _run_main(evaluate_main, [a.replace("{tmp}", tmp) for a in argv], capsys)
    assert (code, err) == (2, ["error: " + message.replace("{tmp}", tmp)])


def test_other_entry_points_check_their_arguments(error_files, capsys):
    from recipe.cli.main import convert_bdd100k_main, make_demo_data_main

    assert _run_main(convert_bdd100k_main, ["--labels", "x.json"], capsys) == (
        2, ["error: output is required: pass --output VALUE or set it in the YAML file"])
    assert _run_main(convert_bdd100k_main, ["--labels", "x.json", "--output", str(error_files / "folder"),
                                            "--box-convention", "half"], capsys) == (
        2, ["error: box_convention: 'half' is not one of inclusive, exclusive"])
    assert _run_main(make_demo_data_main, ["--output", str(error_files / "afile")], capsys) == (
        2, [f"error: output {error_files / 'afile'} is a file; give a folder"])
    assert _run_main(make_demo_data_main, ["--output", "d", "--image-size", "8", "8"], capsys) == (
        2, ["error: image_size must be in [32, inf), got 8"])


def test_user_errors_from_the_scripts_exit_2_with_one_line(error_files):
    for script, argv, message in [
        ("train.py", ["--batch-size", "-2", "--train-img", "nowhere", "--train-ann", "nowhere.json"],
         "error: per_device_train_batch_size must be in [1, inf), got -2"),
        ("train.py", ["--model_config", "{bad"],
         "error: model_config is not valid JSON (Expecting property name enclosed in double quotes at character 1): "
         "'{bad'"),
        ("evaluate.py", ["--gt", "g.json", "--predictions", "p.json", "--output", str(error_files / "folder")],
         f"error: output {error_files / 'folder'} is a folder; give a file name (e.g. "
         f"{error_files / 'folder' / 'metrics.json'})"),
    ]:
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *argv], capture_output=True, text=True,
                              cwd=error_files)
        assert (proc.returncode, proc.stderr.strip().splitlines()) == (2, [message]), proc.stderr[-2000:]


def test_training_args_pickles_carry_no_hub_token():
    """training_args.bin is a pickle of these arguments; in-memory copies keep the token for pushing."""
    args = parse_config(["--hub_token", "hf_FAKE_token_123", "--output_dir", "o"]).training
    data = pickle.dumps(args)
    assert b"hf_FAKE_token_123" not in data and pickle.loads(data).hub_token is None
    assert pickle.loads(data).output_dir == "o"
    assert copy.deepcopy(args).hub_token == copy.copy(args).hub_token == args.hub_token == "hf_FAKE_token_123"
    assert "hf_FAKE_token_123" not in str(args) and "hf_FAKE_token_123" not in args.to_json_string()


def test_console_entry_points_resolve_to_functions():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    lines = [line for line in setup["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    names = {line.split("=")[0].strip() for line in lines}
    assert names == {"detr-train", "detr-evaluate", "detr-predict", "detr-check-data", "detr-convert-bdd100k",
                     "detr-make-demo-data", "detr-browse-dataset", "detr-export", "detr-compare",
                     "detr-search"}
    targets = set()
    for line in lines:
        module, _, attr = line.split("=")[1].strip().partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), line
        targets.add(attr)
    import recipe.cli.main

    assert targets == {n for n in vars(recipe.cli.main) if n.endswith("_main")}  # every entry point has its command


def test_scripts_need_no_sys_path_lines():
    for path in sorted((ROOT / "scripts").glob("*.py")):
        text = path.read_text()
        assert "sys.path" not in text and "from recipe.cli.main import" in text, path.name


ACCELERATE = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE, ids=[p.name for p in ACCELERATE])
def test_accelerate_configs_load_with_accelerates_own_loader(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    expected = {"single_gpu.yaml": ("NO", 1), "multi_gpu.yaml": ("MULTI_GPU", 8),
                "multi_node.yaml": ("MULTI_GPU", 16), "deepspeed_zero2.yaml": ("DEEPSPEED", 8)}[path.name]
    assert (str(config.distributed_type).split(".")[-1], config.num_processes) == expected
    if path.name == "deepspeed_zero2.yaml":
        assert config.deepspeed_config["zero_stage"] == 2
    if path.name == "multi_node.yaml":
        assert config.num_machines == 2


def test_image_check_choices_are_the_checks_the_builder_knows():
    import dataclasses

    from recipe.config.arguments import DataArguments
    from recipe.data.image_check import IMAGE_CHECKS

    field = {f.name: f for f in dataclasses.fields(DataArguments)}["image_check"]
    assert tuple(field.metadata["choices"]) == IMAGE_CHECKS


def test_resize_choices_are_the_resizes_the_transforms_know():
    import dataclasses

    from recipe.config.arguments import DataArguments
    from recipe.pipeline.augment import RESIZES

    field = {f.name: f for f in dataclasses.fields(DataArguments)}["resize"]
    assert tuple(field.metadata["choices"]) == RESIZES


def test_a_checkpoint_flag_beside_a_yaml_model_config_is_an_error_and_none_drops_it():
    """configs/demo.yaml builds its model from model_config: --pretrained typed beside it would be ignored."""
    from recipe.config.load import parse_config

    with pytest.raises(ConfigError, match=r"^--model_name_or_path \(--pretrained\) would have no effect: "
                                          r"\S*configs/demo\.yaml sets model_config, which builds the model and wins; "
                                          r"add --model_config none"):
        parse_config([str(ROOT / "configs" / "demo.yaml"), "--pretrained", "SenseTime/deformable-detr"])
    with pytest.raises(ConfigError, match=r"^--random_init would have no effect"):
        parse_config([str(ROOT / "configs" / "demo.yaml"), "--random_init", "true"])
    with pytest.raises(ConfigError, match=r"^both --model_config and --model_name_or_path"):
        parse_config(["--model_config", "{}", "--model_name_or_path", "x/y"])
    config = parse_config([str(ROOT / "configs" / "demo.yaml"), "--model_config", "none", "--pretrained", "org/m"])
    assert config.model.model_config is None and config.model.model_name_or_path == "org/m"


def test_help_shows_each_commands_own_options_first_and_no_empty_section(capsys):
    from recipe.cli.main import evaluate_main, predict_main

    with pytest.raises(SystemExit):
        evaluate_main(["--help"])
    text = capsys.readouterr().out
    sections = [line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert sections == ["options:", "data:", "model:", "evaluation:"]
    own = text.split("data:")[0]
    assert "--predictions PREDICTIONS" in own and "--plots PLOTS" in own
    assert "(also --images)" in text and "(also --gt / --ann)" in text and "also --pretrained / --model" in text
    assert "--hflip_prob" not in text and "--train_img" not in text and "--class_cost" not in text
    assert len(text.splitlines()) < 130 and "aliases:" not in text  # was 160+, mostly training options
    with pytest.raises(SystemExit):
        predict_main(["--help"])
    assert "aliases:" not in capsys.readouterr().out


def test_a_family_name_as_model_config_builds_its_default_architecture_offline(monkeypatch):
    """`--model_config d_fine` (any family): transformers' default config of the family, random weights, no Hub
    file; an unknown name is one line."""
    from huggingface_hub import constants

    from recipe.models.families import FAMILIES
    from recipe.models.loading import load_model_and_processor
    from recipe.models.sources import check_model_available

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for name in FAMILIES:
        (_, model_args, _, _) = parse_config(["--model_config", name, "--train-img", "i", "--train-ann", "a.json"])
        assert json.loads(model_args.model_config) == {"model_type": name}
        check_model_available(model_args)
    with pytest.raises(ConfigError, match=r"model_config: unknown model_type 'd_fin' \(transformers has no such"):
        parse_config(["--model_config", "d_fin"])
    model, _ = load_model_and_processor(model_args, {0: "a", 1: "b"})  # the last family, built offline
    assert model.config.model_type == name and model.config.num_labels == 2


def test_offline_without_the_checkpoint_never_suggests_a_flag_already_given(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from recipe.core.errors import ModelNotAvailable
    from recipe.models.sources import check_model_available

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    for extra, hint in ((["--random_init", "true"], "--random_init still needs its config.json; for random "
                         "weights without any Hub file, name the architecture instead: --model_config "
                         "deformable_detr"),
                        ([], "pass a local folder; or, for random weights without any Hub file, name the "
                         "architecture instead: --model_config deformable_detr")):
        (_, model_args, _, _) = parse_config(["--pretrained", "SenseTime/deformable-detr", "--offline", "true",
                                              *extra])
        with pytest.raises(ModelNotAvailable) as error:
            check_model_available(model_args)
        message = str(error.value)
        assert message.startswith("model 'SenseTime/deformable-detr' is not in the local cache (offline mode)")
        assert hint in message and message.count("--random_init") == (1 if extra else 0)


def test_an_unreachable_hub_is_one_quick_line_or_the_cached_copy(monkeypatch, tmp_path, caplog):
    """No network and no --offline: one request (no 5 retries with back-off); a cached model is used offline, said
    once; an uncached one is one line suggesting --offline."""
    import logging

    from huggingface_hub import constants

    import recipe.models.sources
    from recipe.core.errors import ModelNotAvailable
    from recipe.models.sources import check_model_available, hub_unreachable_reason

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    assert "refused" in hub_unreachable_reason().lower()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    (_, model_args, _, _) = parse_config(["--pretrained", "nobody/uncached"])
    with pytest.raises(ModelNotAvailable, match=r"^model 'nobody/uncached': the Hub cannot be reached \(.*\) and it "
                                                r"is not in the local cache. On a machine without network pass "
                                                r"--offline"):
        check_model_available(model_args)
    monkeypatch.setattr(recipe.models.sources.AutoConfig, "from_pretrained",
                        lambda name, local_files_only=False: pytest.fail("not cached?") if not local_files_only
                        else __import__("transformers").DeformableDetrConfig())
    with caplog.at_level(logging.WARNING, logger="recipe"):
        check_model_available(model_args)
    assert model_args.offline is True
    assert [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()] == [
        "the Hub cannot be reached ([Errno 111] Connection refused): using the cached copy of nobody/uncached (pass "
        "--offline to skip this check)"]


def test_a_model_config_key_the_config_class_does_not_read_is_an_error():
    # transformers keeps any key as an attribute: DETR's `d_model` given to DAB-DETR (whose width is `hidden_size`)
    # built a model of the default width without a word.
    with pytest.raises(ConfigError, match=r"^model_config: d_model not read by transformers' DabDetrConfig "
                                          r"\(dab-detr\), so it would have no effect"):
        parse_config(["--model_config", '{"model_type": "dab-detr", "d_model": 128}', "--train-img", "i",
                      "--train-ann", "a.json"])
    with pytest.raises(ConfigError, match=r"^model_config: decoder_layer \(did you mean decoder_layers\?\), "
                                          r"num_querys \(did you mean num_queries\?\) not read by transformers' "
                                          r"DetrConfig"):
        parse_config(["--model_config", '{"model_type": "detr", "num_querys": 5, "decoder_layer": 2}'])
    # Fields, mapped names (num_hidden_layers -> encoder_layers) and the legacy backbone keys, which the config
    # folds into backbone_config, are read.
    config = {"model_type": "detr", "num_queries": 5, "num_hidden_layers": 2, "backbone": "resnet50",
              "use_timm_backbone": False, "use_pretrained_backbone": False, "torch_dtype": "float32"}
    (_, model_args, _, _) = parse_config(["--model_config", json.dumps(config), "--train-img", "i", "--train-ann",
                                          "a.json"])
    assert json.loads(model_args.model_config) == config


@pytest.mark.parametrize("model_type", ["detr", "deformable_detr", "conditional_detr", "dab-detr", "table-transformer",
                                        "yolos", "rt_detr", "rt_detr_v2", "d_fine", "deimv2", "lw_detr", "rf_detr"])
def test_a_saved_config_json_passes_as_a_model_config(model_type):
    # What a config class writes itself is read back: D-FINE's config.json holds `head_dim` and every saved config
    # `output_attentions`, neither a dataclass field (a published D-FINE config copied into model_config was refused).
    from transformers import CONFIG_MAPPING

    from recipe.config.model_config import parse_model_config, unread_model_config_keys

    saved = json.loads(CONFIG_MAPPING[model_type]().to_json_string())
    assert unread_model_config_keys(saved, CONFIG_MAPPING[model_type]) == []
    assert parse_model_config(json.dumps(saved)) == saved
    with pytest.raises(ConfigError, match=r"^model_config: hidden_dimension .*not read by"):
        parse_model_config(json.dumps({**saved, "hidden_dimension": 8}))
