"""Every installed command's --help is plain text (no reStructuredText markup from docstrings)."""

import importlib
import tomllib
from pathlib import Path

import pytest

SCRIPTS = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("command", sorted(SCRIPTS))
def test_help_is_plain_text(command, capsys):
    module, function = SCRIPTS[command].split(":")
    with pytest.raises(SystemExit) as exit_info:
        getattr(importlib.import_module(module), function)(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: {command}" in text and "``" not in text
