"""The README's set-up commands are the ones CI runs."""

from conftest import ROOT


def readme_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line for line in lines if line.startswith("python3 -m venv .venv && ")]


def test_readme_has_exactly_two_setup_commands_at_the_top():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("scripts/train.py configs/demo.yaml")
    assert commands[1].endswith("-m pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci
