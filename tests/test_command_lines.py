"""The four tools speak alike: `--help` names the console script a user types and lists every command.

The console scripts come from pyproject.toml, so a renamed script or a command left out of a
description fails here; the commands are the documented ones (README, docs/).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
#: The kiosk's distribution (pneumoedge) and the offline tools' (tools/: pneumoedge-tools).
SCRIPTS = {
    name: target
    for pyproject in ("pyproject.toml", "tools/pyproject.toml")
    for name, target in tomllib.loads((REPO / pyproject).read_text())["project"]["scripts"].items()
}
COMMANDS = {
    "pneumoedge": ["score", "serve", "calibrate", "identity", "audit-verify"],
    "pneumoedge-trainer": ["train", "evaluate", "sweep", "folds", "film-subspace"],
    "pneumoedge-quantize": ["export", "ood", "benchmark"],
    "pneumoedge-fleet": ["pool", "train", "leave-site-out", "promote"],
}


def help_text(script: str, *args: str, capsys: pytest.CaptureFixture[str]) -> str:
    module, _, function = SCRIPTS[script].partition(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_every_console_script_is_checked() -> None:
    assert set(SCRIPTS) == set(COMMANDS)


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_help_names_the_script_and_every_command(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(script, capsys=capsys)
    assert text.startswith(f"usage: {script} "), text.splitlines()[0]
    listed = re.findall(r"^ {4}(\S+)", text, flags=re.MULTILINE)
    assert listed == COMMANDS[script]
    assert "--log-level" in text


@pytest.mark.parametrize(("script", "command"), [(s, c) for s, cs in sorted(COMMANDS.items()) for c in cs])
def test_each_command_help_names_the_console_script(
    script: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert help_text(script, command, capsys=capsys).startswith(f"usage: {script} {command} ")
