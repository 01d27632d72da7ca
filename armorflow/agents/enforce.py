"""Enforcing a Completed model on a node: install its Seccomp profile where the kubelet
looks for ``Localhost`` profiles.

A pod asks for a node-local Seccomp profile with::

    securityContext:
      seccompProfile:
        type: Localhost
        localhostProfile: armorflow/PROFILE.json

and the kubelet hands the runtime ``<kubelet root>/seccomp/armorflow/PROFILE.json``
(``/var/lib/kubelet/seccomp/...`` by default). ``armorflow enforce seccomp`` writes the
profile there from an ArmorProfileModel (a file sink's ``NAME.yaml`` or ``kubectl get
armorprofilemodel NAME -o yaml``). A runtime reads the file when it creates a container,
so the file is replaced atomically: a container starting meanwhile reads the old profile
or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import typer
import yaml

from armorflow.model import BehaviourModel
from armorflow.names import InvalidName, check_profile_name, path_under
from armorflow.render.seccomp import render_seccomp, seccomp_json, unfiltered_namespace_syscalls
from armorflow.resource import ResourceError, StoredModel, read_resource

#: The kubelet's default root for Localhost Seccomp profiles.
KUBELET_SECCOMP_ROOT: Final = Path("/var/lib/kubelet/seccomp")
#: armorflow's folder under that root: its profiles never mix with others'.
LOCALHOST_DIR: Final = "armorflow"


class EnforceError(ValueError):
    """A model that cannot be enforced as asked; says why."""


@dataclass(frozen=True)
class Installed:
    """A profile written for the kubelet, and how a pod refers to it."""

    profile: str
    path: Path
    #: what ``securityContext.seccompProfile.localhostProfile`` says (relative to the root)
    localhost_profile: str
    rendered_now: bool

    def security_context(self) -> dict[str, Any]:
        return {"seccompProfile": {"type": "Localhost",
                                   "localhostProfile": self.localhost_profile}}

    def as_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "path": str(self.path),
                "localhostProfile": self.localhost_profile, "renderedNow": self.rendered_now,
                "securityContext": self.security_context()}


def localhost_path(root: Path, profile: str) -> tuple[Path, str]:
    """(file, localhostProfile) of ``profile`` under the kubelet's Seccomp ``root``."""
    try:
        name = check_profile_name(profile)
    except InvalidName as exc:
        raise EnforceError(str(exc)) from None
    relative = f"{LOCALHOST_DIR}/{name}.json"
    return path_under(root, LOCALHOST_DIR, f"{name}.json"), relative


def read_model_file(path: Path) -> StoredModel:
    """An ArmorProfileModel from a YAML or JSON file."""
    try:
        resource = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EnforceError(f"{path}: cannot read: {exc}") from None
    if not isinstance(resource, dict) or resource.get("kind") != "ArmorProfileModel":
        raise EnforceError(f"{path}: not an ArmorProfileModel")
    try:
        return read_resource(resource)
    except ResourceError as exc:
        raise EnforceError(f"{path}: {exc}") from None


def find_model_file(models_dir: Path, profile: str, namespace: str | None) -> Path:
    """``DIR/NAMESPACE/PROFILE.yaml`` as the file sink lays it out (any namespace when
    ``namespace`` is None, provided only one holds the profile)."""
    localhost_path(Path("/"), profile)  # checks the name before it touches a path
    pattern = f"{namespace or '*'}/{profile}.yaml"
    found = sorted(models_dir.glob(pattern))
    if not found:
        raise EnforceError(f"no {pattern} under {models_dir}")
    if len(found) > 1:
        where = ", ".join(p.parent.name for p in found)
        raise EnforceError(f"{profile} is in several namespaces ({where}): say which with "
                           "--namespace")
    return found[0]


def seccomp_of(stored: StoredModel, *, render: bool) -> tuple[dict[str, Any], bool]:
    """The Seccomp profile to install and whether it was rendered now.

    The stored profile is what the pipeline rendered when the model was Completed. One
    rendered before the namespace syscalls carried argument filters allows any namespace
    through them: refused, unless ``render`` asks for a profile rendered from the stored
    model with this version's renderer.
    """
    if stored.status.get("ready") is not True:
        raise EnforceError(f"{stored.name}: the model is not Completed (status.ready is "
                           f"{stored.status.get('ready')!r})")
    if not render:
        if stored.seccomp is None:
            raise EnforceError(f"{stored.name}: no Seccomp profile in the resource "
                               f"(enforcer {stored.enforcer}); --render makes one from the model")
        unfiltered = unfiltered_namespace_syscalls(stored.seccomp)
        if unfiltered:
            raise EnforceError(
                f"{stored.name}: the stored profile allows {', '.join(unfiltered)} without "
                "namespace filters (rendered by an older armorflow); --render renders it "
                "again from the model")
        return stored.seccomp, False
    model: BehaviourModel = stored.model
    if model.is_empty():
        raise EnforceError(f"{stored.name}: the resource holds no model to render "
                           f"(storage {stored.storage_type})")
    return render_seccomp(model), True


def install_seccomp(root: Path, profile: str, seccomp: dict[str, Any]) -> tuple[Path, str]:
    """Write ``seccomp`` as ``root/armorflow/PROFILE.json`` (atomically, mode 0644)."""
    path, relative = localhost_path(root, profile)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(seccomp_json(seccomp).encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # the runtime may read it as another user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path, relative


def enforce_seccomp(stored: StoredModel, root: Path, *, render: bool = False) -> Installed:
    """Install the Seccomp profile of a Completed ArmorProfileModel for the kubelet."""
    seccomp, rendered = seccomp_of(stored, render=render)
    path, relative = install_seccomp(root, stored.name, seccomp)
    return Installed(stored.name, path, relative, rendered)


# --- armorflow enforce ----------------------------------------------------------------------

enforce_app = typer.Typer(
    name="enforce", no_args_is_help=True,
    help="Put a Completed model's profiles into force on this node.")


@enforce_app.command("seccomp")
def seccomp_command(
    model: Annotated[Path | None, typer.Option(
        "--model", help="An ArmorProfileModel (YAML or JSON file).")] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="The profile's name, looked up in --models.")] = None,
    models: Annotated[Path | None, typer.Option(
        "--models", help="A file sink's directory (DIR/NAMESPACE/NAME.yaml).")] = None,
    namespace: Annotated[str | None, typer.Option(
        "--namespace", help="The ArmorProfileModel's namespace under --models.")] = None,
    root: Annotated[Path, typer.Option(
        "--root", help="The kubelet's Localhost Seccomp directory.")] = KUBELET_SECCOMP_ROOT,
    render: Annotated[bool, typer.Option(
        "--render", help="Render the profile from the stored model with this version "
        "instead of installing the stored one.")] = False,
) -> None:
    """Install a Completed model's Seccomp profile as ROOT/armorflow/PROFILE.json and
    print the securityContext that selects it."""
    try:
        if (model is None) == (profile is None):
            raise EnforceError("give either --model FILE or --profile NAME")
        if model is None:
            if models is None or profile is None:
                raise EnforceError("--profile needs --models DIR")
            model = find_model_file(models, profile, namespace)
        stored = read_model_file(model)
        if profile is not None and stored.name != profile:
            raise EnforceError(f"{model} holds {stored.name!r}, not {profile!r}")
        installed = enforce_seccomp(stored, root, render=render)
    except (EnforceError, OSError) as exc:
        typer.echo(f"armorflow enforce seccomp: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(installed.as_dict(), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(enforce_app)
