"""The ArmorProfileModel resource (``crd.varmor.org/v1beta1``, vArmor 0.7's field names).

One resource per profile: name = the profile name, namespace = the policy's namespace
(``varmor`` for a VarmorClusterPolicy). ``data.dynamicResult`` holds the behaviour model,
``data.profile.{name, enforcer, mode, content, seccompContent}`` the profiles (``content``
and ``seccompContent`` base64), ``storageType`` where the model lives, and ``status``
what was delivered.

Size: etcd refuses objects over 1.5 MiB, so a resource is built to fit ``budget`` bytes of
JSON. The model goes in as plain ``data.dynamicResult`` when it fits; else as
``data.dynamicResultGzip`` (base64 of gzip-compressed JSON); else it is written to a file
under ``model_dir`` (a volume) and referenced from ``data.dynamicResultRef`` with
``storageType: LocalDisk``. The profiles always go in the resource.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import gzip
import hashlib
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

import orjson

from armorflow.control import PolicyRef
from armorflow.model import BehaviourModel
from armorflow.names import InvalidName, path_under
from armorflow.render.seccomp import seccomp_json

log = logging.getLogger(__name__)

GROUP: Final = "crd.varmor.org"
VERSION: Final = "v1beta1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "ArmorProfileModel"
PLURAL: Final = "armorprofilemodels"
#: Where the models of cluster-wide policies live (the seed reads them there).
CLUSTER_NAMESPACE: Final = "varmor"
CLUSTER_POLICY_KIND: Final = "VarmorClusterPolicy"
MODE_BEHAVIOR_MODELING: Final = "BehaviorModeling"

STORAGE_INTERNAL: Final = "CRDInternal"
STORAGE_LOCAL_DISK: Final = "LocalDisk"
#: How the model was stored (SinkResult.stored, the ModelStored condition's reason).
STORED_PLAIN: Final = "Plain"
STORED_GZIP: Final = "Gzip"
STORED_LOCAL: Final = "LocalDisk"
#: The model could not be stored anywhere (no model directory, or writing it failed): the
#: profiles are still delivered and the ModelStored condition says why.
STORED_NONE: Final = "NotStored"

#: The JSON budget of a whole resource: etcd's 1.5 MiB limit less room for the server's
#: metadata (managedFields, annotations) and the status.
DEFAULT_BUDGET: Final = 1_400_000
#: No size limit (the file sink).
NO_BUDGET: Final = sys.maxsize
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "armorflow"}


class ResourceError(ValueError):
    """A resource that cannot be built or read (too large profiles, corrupt model data)."""


def owner_reference(policy: PolicyRef) -> dict[str, Any] | None:
    """The owner reference to ``policy``, or None while its uid is unknown ("")."""
    if not policy.uid:
        return None
    return {"apiVersion": API_VERSION, "kind": policy.kind, "name": policy.name,
            "uid": policy.uid, "controller": True, "blockOwnerDeletion": False}


def resource_namespace(policy: PolicyRef) -> str:
    """The namespace of a policy's ArmorProfileModel (``varmor`` for cluster policies)."""
    if policy.kind == CLUSTER_POLICY_KIND or not policy.namespace:
        return CLUSTER_NAMESPACE
    return policy.namespace


@dataclass(frozen=True)
class CompletedModel:
    """A finished model and its rendered profiles: what a sink writes.

    ``policy`` is the control messages' :class:`~armorflow.control.PolicyRef` (its ``uid``
    "" while unknown); ``apparmor`` (profile text) and ``seccomp`` (the profile as a dict)
    are None when the enforcer does not use them.
    """

    profile: str
    namespace: str
    policy: PolicyRef
    enforcer: str
    model: BehaviourModel
    apparmor: str | None
    seccomp: dict[str, Any] | None
    mode: str = MODE_BEHAVIOR_MODELING


@dataclass(frozen=True)
class StoredModel:
    """An ArmorProfileModel read back: decoded profiles and the model, wherever it lives."""

    name: str
    namespace: str
    enforcer: str
    mode: str
    storage_type: str
    apparmor: str | None
    seccomp: dict[str, Any] | None
    dynamic_result: dict[str, Any]
    status: dict[str, Any]

    @property
    def model(self) -> BehaviourModel:
        return BehaviourModel.from_dynamic_result(self.dynamic_result)


# --- encoding ----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ResourceError(f"{what} is not valid base64: {exc}") from exc


def gzip_json(value: Any) -> bytes:
    """Deterministic gzip (no timestamp) of compact, key-sorted JSON."""
    return gzip.compress(orjson.dumps(value, option=orjson.OPT_SORT_KEYS), mtime=0)


def json_size(obj: Any) -> int:
    return len(orjson.dumps(obj))


def _write_model_file(model_dir: Path, namespace: str, name: str,
                      blob: bytes) -> dict[str, Any]:
    """Write the compressed model atomically; returns its ``dynamicResultRef``."""
    try:
        target = path_under(model_dir, namespace, f"{name}.dynamicResult.json.gz")
    except InvalidName as exc:
        raise OSError(f"refused: {exc}") from None
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"uri": target.resolve().as_uri(), "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob)}


# --- building ----------------------------------------------------------------------------


def profile_block(name: str, enforcer: str, mode: str, apparmor: str | None,
                  seccomp: dict[str, Any] | None) -> dict[str, Any]:
    block: dict[str, Any] = {"name": name, "enforcer": enforcer, "mode": mode}
    if apparmor is not None:
        block["content"] = _b64(apparmor.encode("utf-8"))
    if seccomp is not None:
        block["seccompContent"] = _b64(seccomp_json(seccomp).encode("utf-8"))
    return block


def build_resource(
    name: str,
    namespace: str,
    model: BehaviourModel,
    apparmor: str | None,
    seccomp: dict[str, Any] | None,
    *,
    enforcer: str,
    mode: str = MODE_BEHAVIOR_MODELING,
    owner: PolicyRef | None = None,
    budget: int = DEFAULT_BUDGET,
    model_dir: Path | None = None,
    inline_model: bool = True,
) -> tuple[dict[str, Any], str]:
    """The ArmorProfileModel for ``model`` and its profiles, and how the model was stored
    (:data:`STORED_PLAIN`, :data:`STORED_GZIP`, :data:`STORED_LOCAL`, or
    :data:`STORED_NONE` when it needs a file and ``model_dir`` is None or unwritable).

    ``inline_model=False`` skips the in-resource forms (for a server that refused them
    although they fit the budget). Raises :class:`ResourceError` only when the profiles
    alone exceed ``budget``.
    """
    metadata: dict[str, Any] = {"name": name, "namespace": namespace,
                                "labels": dict(MANAGED_BY)}
    reference = owner_reference(owner) if owner is not None else None
    if reference is not None:
        metadata["ownerReferences"] = [reference]
    base: dict[str, Any] = {
        "apiVersion": API_VERSION, "kind": KIND, "metadata": metadata,
        "storageType": STORAGE_INTERNAL,
        "data": {"profile": profile_block(name, enforcer, mode, apparmor, seccomp)},
    }
    if json_size(base) > budget:
        raise ResourceError(f"the profiles of {namespace}/{name} alone take "
                            f"{json_size(base)} bytes, over the {budget}-byte budget")
    dynamic_result = model.to_dynamic_result()
    plain = {**base, "data": {**base["data"], "dynamicResult": dynamic_result}}
    if inline_model and json_size(plain) <= budget:
        return plain, STORED_PLAIN
    blob = gzip_json(dynamic_result)
    packed = {**base, "data": {**base["data"], "dynamicResultGzip": _b64(blob)}}
    if inline_model and json_size(packed) <= budget:
        return packed, STORED_GZIP
    if model_dir is None:
        log.error("the model of %s/%s needs %d compressed bytes and no model directory is "
                  "configured: delivering the profiles without it", namespace, name, len(blob))
        return base, STORED_NONE
    try:
        ref = _write_model_file(model_dir, namespace, name, blob)
    except OSError as exc:
        log.error("cannot write the model of %s/%s under %s (%s): delivering the profiles "
                  "without it", namespace, name, model_dir, exc)
        return base, STORED_NONE
    local = {**base, "storageType": STORAGE_LOCAL_DISK,
             "data": {**base["data"], "dynamicResultRef": ref}}
    return local, STORED_LOCAL


def build_status(enforcer: str, apparmor: str | None, seccomp: dict[str, Any] | None,
                 stored: str, *, now: str | None = None,
                 previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """``status``: desired = the profiles the enforcer calls for, completed = those written.

    A condition whose status is the same as in ``previous`` keeps its lastTransitionTime.
    """
    wanted = [kind for kind in ("AppArmor", "Seccomp") if kind in enforcer]
    delivered = [kind for kind, value in (("AppArmor", apparmor), ("Seccomp", seccomp))
                 if kind in wanted and value is not None]
    stamp = now or datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = len(delivered) == len(wanted)
    status: dict[str, Any] = {
        "desiredNumber": len(wanted),
        "completedNumber": len(delivered),
        "ready": ready,
        "conditions": [
            {"type": "Ready", "status": "True" if ready else "False",
             "lastTransitionTime": stamp, "reason": "ProfilesWritten" if ready else
             "ProfilesMissing",
             "message": f"profiles written: {', '.join(delivered) or 'none'}"},
            {"type": "ModelStored", "status": "False" if stored == STORED_NONE else "True",
             "lastTransitionTime": stamp,
             "reason": stored, "message": {
                 STORED_PLAIN: "the model is in data.dynamicResult",
                 STORED_GZIP: "the model is gzip+base64 in data.dynamicResultGzip",
                 STORED_LOCAL: "the model is on disk, see data.dynamicResultRef",
             }.get(stored, "the model was too large and could not be written to disk")},
        ],
    }
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    for condition in status["conditions"]:
        old = before.get(condition["type"])
        if old and old.get("status") == condition["status"] and old.get("lastTransitionTime"):
            condition["lastTransitionTime"] = old["lastTransitionTime"]
    return status


# --- reading -----------------------------------------------------------------------------


def load_dynamic_result(resource: dict[str, Any]) -> dict[str, Any]:
    """The model of ``resource`` from whichever field holds it (file references are read
    and checked against their SHA-256)."""
    data = resource.get("data") or {}
    if isinstance(data.get("dynamicResult"), dict):
        return dict(data["dynamicResult"])
    if isinstance(data.get("dynamicResultGzip"), str):
        return _gunzip_json(_unb64(data["dynamicResultGzip"], "data.dynamicResultGzip"))
    ref = data.get("dynamicResultRef")
    if isinstance(ref, dict):
        parsed = urlparse(str(ref.get("uri", "")))
        if parsed.scheme != "file":
            raise ResourceError(f"unsupported model reference {ref.get('uri')!r}")
        try:
            blob = Path(unquote(parsed.path)).read_bytes()
        except OSError as exc:
            raise ResourceError(f"the referenced model cannot be read: {exc}") from exc
        if hashlib.sha256(blob).hexdigest() != ref.get("sha256"):
            raise ResourceError(f"the referenced model {ref['uri']} does not match its sha256")
        return _gunzip_json(blob)
    return {}


def _gunzip_json(blob: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(gzip.decompress(blob))
    except (OSError, EOFError, orjson.JSONDecodeError) as exc:
        raise ResourceError(f"the compressed model is corrupt: {exc}") from exc
    if not isinstance(value, dict):
        raise ResourceError("the compressed model is not a JSON object")
    return value


def read_resource(resource: dict[str, Any]) -> StoredModel:
    """Decode an ArmorProfileModel (as returned by the API or loaded from YAML)."""
    if resource.get("kind") != KIND:
        raise ResourceError(f"not an {KIND}: {resource.get('kind')!r}")
    meta = resource.get("metadata") or {}
    profile = (resource.get("data") or {}).get("profile") or {}
    apparmor = seccomp = None
    if profile.get("content"):
        apparmor = _unb64(profile["content"], "data.profile.content").decode("utf-8")
    if profile.get("seccompContent"):
        raw = _unb64(profile["seccompContent"], "data.profile.seccompContent")
        try:
            seccomp = json.loads(raw)
        except ValueError as exc:
            raise ResourceError(f"data.profile.seccompContent is not JSON: {exc}") from exc
    return StoredModel(
        name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
        enforcer=str(profile.get("enforcer", "")), mode=str(profile.get("mode", "")),
        storage_type=str(resource.get("storageType", STORAGE_INTERNAL)),
        apparmor=apparmor, seccomp=seccomp,
        dynamic_result=load_dynamic_result(resource),
        status=dict(resource.get("status") or {}),
    )
