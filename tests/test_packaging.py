"""One import namespace, every package folder shipped, and a CLI whose verbs all answer --help."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main

from armorflow.cli import app

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"armorflow": "armorflow", "pipeline": "armorflow.pipeline",
           "agents": "armorflow.agents", "operator": "armorflow.operator"}


def test_every_package_folder_is_listed() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder, package in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((package, *rel)))
    assert found == listed
    assert config["package-dir"] == {package: folder for folder, package in FOLDERS.items()}


def test_stdlib_operator_is_not_shadowed() -> None:
    # Run from the repository root, where a folder named operator/ exists.
    out = subprocess.run(
        [sys.executable, "-c", "import operator, armorflow.operator as o; "
         "print(operator.itemgetter(0)([7]), o.__name__)"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    assert out.stdout.split() == ["7", "armorflow.operator"]
    # Without site, nothing has imported the standard module before the current directory
    # is searched, so the folder is found first: it must hand the real module over.
    bare = subprocess.run(
        [sys.executable, "-S", "-c", "import operator, collections; "
         "print(operator.itemgetter(0)([7]), operator.__file__.endswith('operator.py'))"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    assert bare.stdout.split() == ["7", "True"]


def _commands() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = []

    def walk(cmd: object, prefix: tuple[str, ...]) -> None:
        paths.append(prefix)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, (*prefix, name))

    walk(root, ())
    return paths


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "armorflow")
def test_every_verb_answers_help(path: tuple[str, ...]) -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "armorflow"), *path, "--help"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout
