"""docs/config.md is what `python -m recipe.cli.config_doc` writes from the dataclasses today, and names every
option."""

import dataclasses

from conftest import ROOT
from recipe.cli.config_doc import render
from recipe.config.commands import COMMANDS


def test_config_reference_is_current():
    committed = (ROOT / "docs" / "config.md").read_text()
    assert committed == render(), "regenerate it: python -m recipe.cli.config_doc > docs/config.md"


def test_config_reference_names_every_option_of_every_command():
    text = render()
    for prog, command in COMMANDS.items():
        assert f"### {prog}\n" in text
        for dtype in command.dataclasses:
            for f in dataclasses.fields(dtype):
                assert f"| `{f.name}` |" in text, (prog, f.name)
    assert "| `use_ema` | `false` |" in text and "| `learning_rate` | `0.0002` |" in text


def test_readme_points_to_the_reference_instead_of_listing_options():
    readme = (ROOT / "README.md").read_text()
    assert "docs/config.md" in readme and "| `train_img`" not in readme
