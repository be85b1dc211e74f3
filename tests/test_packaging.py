"""One distribution: pyproject.toml's extras mirror the pinned requirements-*.txt (the source of truth)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

import edge

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
#: Each extra and the lock file it mirrors; `-r FILE` in a lock is `pneumoedge[EXTRA of FILE]`.
LOCKS = {
    "kiosk": "requirements-edge.txt",
    "kiosk-tflite-runtime": "requirements-edge-tflite-runtime.txt",
    "train": "requirements-train.txt",
    "test-edge": "requirements-test-edge.txt",
    "test": "requirements-test.txt",
}


def lock_lines(name: str) -> set[str]:
    """The requirement lines of a lock, each `-r` include written as the extra that mirrors it."""
    extra_of = {file: extra for extra, file in LOCKS.items()}
    lines = set()
    for raw in (REPO / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines.add(f"pneumoedge[{extra_of[line[3:].strip()]}]")
        elif line:
            lines.add(line)
    return lines


def pins(name: str) -> dict[str, str]:
    """Package name -> pinned version of a lock, includes followed."""
    found = {}
    for line in lock_lines(name):
        requirement = Requirement(line)
        if requirement.name == "pneumoedge":
            found |= pins(LOCKS[next(iter(requirement.extras))])
        else:
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{name}: {line} is not pinned"
            found[requirement.name.lower().replace("_", "-")] = spec.version
    return found


@pytest.mark.parametrize("extra", sorted(LOCKS))
def test_each_extra_mirrors_its_lock_file(extra: str) -> None:
    assert set(PROJECT["optional-dependencies"][extra]) == lock_lines(LOCKS[extra])


@pytest.mark.parametrize("lock", ["requirements-edge.txt", "requirements-edge-tflite-runtime.txt"])
def test_the_kiosk_locks_hold_no_tensorflow_and_satisfy_the_core(lock: str) -> None:
    pinned = pins(lock)
    assert not [name for name in pinned if re.search("tensorflow|keras", name)]
    for line in PROJECT["dependencies"]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(pinned[requirement.name]), (lock, line)


def test_the_build_backend_is_the_pinned_one() -> None:
    assert PYPROJECT["build-system"]["requires"] == sorted(lock_lines("requirements-build.txt"))


def test_the_version_is_kept_in_one_place() -> None:
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "edge/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", edge.__version__)


TOOLS = tomllib.loads((REPO / "tools" / "pyproject.toml").read_text())


def test_the_kiosk_distribution_ships_the_kiosk_only() -> None:
    assert PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["edge"]
    assert set(PROJECT["scripts"]) == {"pneumoedge"}


def test_the_tools_are_a_distribution_of_their_own_with_the_same_version() -> None:
    hook = ast.parse((REPO / "tools" / "hatch_build.py").read_text())
    (packages,) = [ast.literal_eval(n.value) for n in hook.body if isinstance(n, ast.Assign)]
    assert TOOLS["project"]["name"] == "pneumoedge-tools"
    assert TOOLS["project"]["dependencies"] == ["pneumoedge"]
    assert TOOLS["tool"]["hatch"]["version"]["path"] == "../edge/__init__.py"
    assert sorted(packages) == sorted({"lab", "trainer", "quantize", "fleet"})
    assert TOOLS["build-system"] == PYPROJECT["build-system"]


@pytest.mark.parametrize(
    ("script", "target", "packages"),
    [(s, t, ["edge"]) for s, t in PROJECT["scripts"].items()]
    + [(s, t, ["lab", "trainer", "quantize", "fleet"]) for s, t in TOOLS["project"]["scripts"].items()],
)
def test_console_scripts_name_the_module_mains(script: str, target: str, packages: list[str]) -> None:
    module, function = target.split(":")
    assert module.endswith(".__main__") and module.split(".")[0] in packages
    assert callable(getattr(importlib.import_module(module), function))
