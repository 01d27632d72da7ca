"""Folders are import paths, the wheel ships what the runtime needs and imports no test or
training extra, and every CLI verb answers --help."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main

from armorflow.cli import app

REPO = Path(__file__).resolve().parents[1]
#: Installed only with the test or train extras: the runtime must never import them.
TEST_ONLY = ("pytest", "hypothesis", "kmock", "kopf", "jsonschema", "jsonpatch",
             "kubernetes_validate", "grpc_tools", "sklearn", "numpy", "seccomp", "support")

_IMPORT_FROM_WHEEL = """
import importlib.abc, sys
blocked = set(sys.argv[2].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"test-only module imported: {name}")
        return None
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
import armorflow, armorflow.pipeline, armorflow.agents, armorflow.operator
import armorflow.cli, armorflow.pipeline.worker, armorflow.agents.agent, armorflow.agents.cri
import armorflow.operator.service, armorflow.pipeline.classifier
from armorflow.pipeline.classifier import load_default
load_default()  # the shipped trees, read without the training extra
print(armorflow.__file__)
"""


def test_the_wheel_imports_without_test_or_train_dependencies(tmp_path: Path) -> None:
    """Build the wheel, install it alone, import every component with test-only modules
    blocked: the layout ships what the runtime needs and nothing reaches for an extra."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("armorflow-*.whl"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    out = subprocess.run([sys.executable, "-P", "-c", _IMPORT_FROM_WHEEL, str(target),
                          ",".join(TEST_ONLY)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target))
    shipped = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    for data in ("armorflow/agents/bpf/common.h", "armorflow/agents/cri/api.proto",
                 "armorflow/pipeline/classifier/span_model.json.gz", "armorflow/data/demo-4.jsonl",
                 "armorflow/py.typed"):
        assert data in shipped


def test_folders_are_import_paths() -> None:
    """No package-dir map: every package is the folder its name says, under armorflow/."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "package-dir" not in config
    for component in ("pipeline", "agents", "operator"):
        assert (REPO / "armorflow" / component / "__init__.py").is_file()
        # The top-level folder is a pointer for readers, never a second package.
        assert not (REPO / component / "__init__.py").exists()
        assert "armorflow/" + component in (REPO / component / "README.md").read_text()


def test_stdlib_operator_is_not_shadowed() -> None:
    # From the repository root, with the current directory first on sys.path and no site.
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


def _parse(argv: list[str]) -> None:
    """Parse ``armorflow ARGV`` down to the verb, as the CLI would, without running it."""
    import click

    cmd: click.Command = typer.main.get_command(app)
    ctx = cmd.make_context("armorflow", list(argv), resilient_parsing=False)
    while isinstance(cmd, click.Group):
        name, sub, rest = cmd.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
        assert sub is not None and name is not None
        cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)


def _example_argv(line: str) -> list[str]:
    import shlex

    line = line.split("  #")[0]
    line = line[line.index("armorflow "):].split(" < ")[0]  # after a pipe, before a redirect
    return shlex.split(line)[1:]


@pytest.mark.parametrize("path", [p for p in _commands() if p],
                         ids=lambda p: " ".join(p))
def test_every_verb_has_examples_that_parse(path: tuple[str, ...]) -> None:
    from armorflow.examples import EXAMPLES

    examples = EXAMPLES.get(" ".join(path))
    assert examples, f"no examples for 'armorflow {' '.join(path)}' in armorflow/examples.py"
    for line in examples:
        argv = _example_argv(line)
        assert tuple(argv[:len(path)]) == path, line
        _parse(argv)
    out = subprocess.run([str(Path(sys.executable).parent / "armorflow"), *path, "--help"],
                         capture_output=True, text=True, timeout=60)
    assert "Examples:" in out.stdout


def test_version_flag() -> None:
    from armorflow import __version__

    out = subprocess.run([str(Path(sys.executable).parent / "armorflow"), "--version"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == f"armorflow {__version__}"
