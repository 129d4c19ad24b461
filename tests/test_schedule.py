"""`--schedule auto` (recipe/training/schedule.py): the rule's numbers by hand, what the command line keeps, and where
the chosen schedule is written."""

import types

import pytest

from conftest import DEMO, ROOT
from recipe.config.load import parse_config
from recipe.core.errors import ConfigError
from recipe.training.schedule import apply_schedule, auto_epochs, auto_schedule


def test_epochs_by_hand():
    # ceil(100 * sqrt(500 / N)), clamped to [12, 200]
    assert auto_epochs(205) == 157  # BCCD's training split: 156.2
    assert auto_epochs(400) == 112  # the demo: 111.8
    assert auto_epochs(500) == 100
    assert auto_epochs(118_287) == 12  # COCO train2017: 6.5 -> the 1x schedule
    assert auto_epochs(5) == 200


def test_bccd_with_d_fine_config_by_hand():
    # 205 images, batch 8: 26 steps an epoch; d_fine.yaml has epochs without augmentation and EMA 0.9999.
    s = auto_schedule(205, step_images=8, steps_per_epoch=26, config_no_aug_epochs=8,
                      config_ema_decay=0.9999)
    assert (s.epochs, s.total_steps) == (157, 4082)
    assert s.warmup_steps == s.ema_warmup_steps == 204  # round(0.05 * 4082)
    assert s.ema_decay == pytest.approx(1 - 10 / 4082)
    assert s.no_aug_epochs == 16  # round(0.1 * 157)
    assert s.eval_every_epochs == 7  # ceil(157 / 25)


def test_typed_epochs_and_steps_are_kept():
    s = auto_schedule(205, step_images=8, steps_per_epoch=26, config_no_aug_epochs=8,
                      config_ema_decay=0.9999, epochs=10)
    assert (s.epochs, s.total_steps, s.warmup_steps, s.no_aug_epochs, s.eval_every_epochs) == (10, 260, 13, 1, 1)
    s = auto_schedule(205, step_images=8, steps_per_epoch=26, config_no_aug_epochs=0,
                      config_ema_decay=0.99, max_steps=100)
    assert (s.epochs, s.total_steps, s.warmup_steps, s.no_aug_epochs, s.ema_decay) == (4, 100, 5, 0, 0.9)
    # A COCO-size set: the originals' 2000-step cap
    s = auto_schedule(118_287, step_images=32, steps_per_epoch=3697, config_no_aug_epochs=0,
                      config_ema_decay=0.9999)
    assert (s.epochs, s.warmup_steps) == (12, 2000)
    assert s.ema_decay == pytest.approx(1 - 10 / (12 * 3697))  # 0.99977: averaged over the last tenth


def demo_config(tmp_path, *flags):
    return parse_config([DEMO, "--output_dir", str(tmp_path / "out"), *flags])


def test_auto_replaces_the_yaml_and_keeps_what_the_command_line_typed(tmp_path):
    config = demo_config(tmp_path, "--schedule", "auto", "--warmup_steps", "7")
    schedule = apply_schedule(config.data, config.training, 400)  # demo.yaml: 26 epochs, warm-up 50, eval every 260
    assert config.training.num_train_epochs == schedule.epochs == 112
    assert config.training.warmup_steps == 7  # typed
    assert config.training.ema_warmup_steps == schedule.ema_warmup_steps == 280  # round(0.05 * 112 * 50)
    assert (config.training.eval_strategy, config.training.eval_steps) == ("steps", 5 * 50)  # ceil(112 / 25) = 5
    assert config.training.schedule_line.startswith("auto (400 images, 8 per step): 112 epochs (5600 steps)")
    config = demo_config(tmp_path, "--schedule", "auto", "--num_train_epochs", "3")
    apply_schedule(config.data, config.training, 400)
    assert (config.training.num_train_epochs, config.training.warmup_steps) == (3, 8)  # round(0.05 * 150)


def test_config_schedule_changes_nothing(tmp_path):
    config = demo_config(tmp_path)
    assert apply_schedule(config.data, config.training, 400) is None
    assert (config.training.num_train_epochs, config.training.warmup_steps) == (26, 50)


def test_d_fine_config_on_bccd_scales_its_final_phase(tmp_path):
    config = parse_config([str(ROOT / "configs" / "d_fine.yaml"), "--output_dir", str(tmp_path / "o"),
                           "--schedule", "auto", "--per_device_train_batch_size", "8", "--num_train_epochs", "10"])
    schedule = apply_schedule(config.data, config.training, 205)
    assert (schedule.no_aug_epochs, config.data.no_aug_epochs) == (1, 1)  # 8 of 80 -> 1 of 10
    assert config.training.ema_decay == pytest.approx(1 - 10 / 260)  # 0.9999 averages over 10,000 steps
    assert (config.training.save_strategy, config.training.save_steps) == ("steps", 26)  # saving followed eval


def test_schedule_choices_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="schedule"):
        demo_config(tmp_path, "--schedule", "fast")


def test_the_card_names_the_schedule(tmp_path):
    from recipe.training.card import write_model_card

    model = types.SimpleNamespace(config=types.SimpleNamespace(model_type="d_fine", id2label={0: "cell"}))
    data_args = types.SimpleNamespace(dataset="bccd", train_ann=None, val_ann=None, augmentation="rtdetr")
    write_model_card(str(tmp_path), model, data_args=data_args, metrics={}, precision="fp32",
                     schedule="auto (205 images, 8 per step): 10 epochs")
    assert "Schedule: auto (205 images, 8 per step): 10 epochs." in (tmp_path / "README.md").read_text()


def test_a_fixed_schedule_that_misfits_the_run_says_so(tmp_path, caplog):
    # d_fine.yaml on BCCD's 205 images for 10 epochs: its warm-up of 500 steps outlasts the 260-step run.
    config = parse_config([str(ROOT / "configs" / "d_fine.yaml"), "--output_dir", str(tmp_path / "o"),
                           "--per_device_train_batch_size", "8", "--num_train_epochs", "10"])
    with caplog.at_level("WARNING", logger="recipe"):
        assert apply_schedule(config.data, config.training, 205) is None
    assert ("the schedule misfits this run of 260 steps (10 epochs): warm-up 500 steps, 8 epochs without "
            "augmentation; --schedule auto fits them to the data") in caplog.text
    caplog.clear()
    config = demo_config(tmp_path)  # the demo's own: 1,300 steps, warm-up 50
    with caplog.at_level("WARNING", logger="recipe"):
        apply_schedule(config.data, config.training, 400)
    assert "misfits" not in caplog.text


def test_auto_replaces_max_steps_of_the_yaml(tmp_path):
    yaml = tmp_path / "steps.yaml"
    yaml.write_text((ROOT / "configs" / "demo.yaml").read_text() + "max_steps: 40\n")
    config = parse_config([str(yaml), "--output_dir", str(tmp_path / "o"), "--schedule", "auto"])
    schedule = apply_schedule(config.data, config.training, 400)
    assert (config.training.max_steps, config.training.num_train_epochs, schedule.total_steps) == (-1, 112, 5600)
