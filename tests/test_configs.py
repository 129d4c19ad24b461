import pytest

from recipe.config import ConfigError, parse_config

from conftest import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_parses(path):
    data_args, model_args, train_args = parse_config([str(path)])
    assert train_args.remove_unused_columns is False and train_args.batch_eval_metrics is True


def test_yaml_is_default_and_command_line_overrides():
    import yaml

    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    data_args, model_args, train_args = parse_config([str(ROOT / "configs" / "demo.yaml"), "--learning_rate", "0.5"])
    assert train_args.learning_rate == 0.5 != demo["learning_rate"]  # command line over YAML
    assert data_args.eval_size == demo["eval_size"] != 800  # YAML over the dataclass default
    assert model_args.auxiliary_loss is None and "auxiliary_loss" not in demo  # the family default (on)


def test_seed_flags_are_accepted():
    data_args, model_args, train_args = parse_config([
        "--train-img", "ti", "--train-ann", "ta", "--val-img", "vi", "--val-ann", "va", "--num-epochs", "3",
        "--batch-size", "4", "--num-workers", "0", "--amp", "--pretrained", "some/model", "--offline",
        "--score-threshold", "0.05", "--subset", "100", "--output-dir", "outputs/x"])
    assert (data_args.train_img, data_args.train_ann, data_args.val_img, data_args.val_ann) == ("ti", "ta", "vi", "va")
    assert (train_args.num_train_epochs, train_args.per_device_train_batch_size,
            train_args.per_device_eval_batch_size, train_args.dataloader_num_workers) == (3, 4, 4, 0)
    assert train_args.amp is True and model_args.offline is True
    assert model_args.model_name_or_path == "some/model" and model_args.score_threshold == 0.05
    assert data_args.subset == 100 and train_args.output_dir == "outputs/x"


def test_recipe_defaults_follow_the_original_deformable_detr():
    from recipe.families import FAMILIES, config_overrides, loss_weights

    _, model_args, train_args = parse_config([])
    family = FAMILIES["deformable_detr"]
    assert config_overrides(family, model_args) == {"auxiliary_loss": True, "class_cost": 2, "bbox_cost": 5,
                                                    "giou_cost": 2}
    assert loss_weights(family, model_args)["loss_ce"] == 2.0
    assert (family.backbone_lr_multiplier, model_args.linear_proj_lr_multiplier) == (0.1, 0.1)
    assert (train_args.learning_rate, train_args.weight_decay, train_args.max_grad_norm) == (2e-4, 1e-4, 0.1)
    assert train_args.eval_do_concat_batches is False and model_args.score_threshold == 0.0


def test_unknown_yaml_key_is_an_error(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("learning_rate: 1.0e-4\nlerning_rate: 2\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lerning_rate'\]"):
        parse_config([str(cfg)])


def test_unknown_flag_is_an_error():
    with pytest.raises(ConfigError, match="--no-such-flag"):
        parse_config(["--no-such-flag", "1"])


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
