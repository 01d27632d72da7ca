"""Resource types the emulator serves: built-ins, and custom ones read from CRD manifests.

A CRD's ``openAPIV3Schema`` (a structural schema) becomes a JSON Schema checked with
``jsonschema``; unknown fields are pruned as the API server prunes them, except under
``x-kubernetes-preserve-unknown-fields``. Not evaluated (documented in ``docs/sinks.md``):
``default`` (no defaulting), ``x-kubernetes-validations`` (CEL), ``format``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import yaml

#: The verbs discovery advertises for every served resource.
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the API and how writes treat it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: ``status`` is a subresource: main writes keep the stored status, /status writes
    #: change only the status.
    status_subresource: bool = False
    #: A custom resource (from a CRD): schema-checked, no strategic merge patch.
    custom: bool = False
    schema: dict[str, Any] | None = None
    printer_columns: tuple[dict[str, Any], ...] = ()
    _validator: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return self.version if not self.group else f"{self.group}/{self.version}"

    @property
    def qualified(self) -> str:
        """``plural.group`` as the API server names the resource in messages."""
        return self.plural if not self.group else f"{self.plural}.{self.group}"

    def validation_errors(self, obj: dict[str, Any]) -> list[tuple[str, str]]:
        """(field path, message) for each schema violation of ``obj``."""
        if self.schema is None:
            return []
        validator = self._validator
        if validator is None:
            validator = jsonschema.Draft202012Validator(to_json_schema(self.schema))
            object.__setattr__(self, "_validator", validator)
        errors = []
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) for p in error.absolute_path) or "<root>"
            errors.append((path, error.message))
        return errors

    def prune(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` without the fields its schema does not declare (the API server's pruning)."""
        if self.schema is None:
            return obj
        pruned = _prune(obj, self.schema, root=True)
        assert isinstance(pruned, dict)
        return pruned


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as JSON Schema (nullable, int-or-string, extensions)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        elif key in ("type", "required", "enum", "minimum", "maximum", "exclusiveMinimum",
                     "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems",
                     "maxItems", "uniqueItems", "minProperties", "maxProperties",
                     "additionalProperties", "multipleOf"):
            out[key] = value
        # description, default, format, example, x-kubernetes-*: not validation here.
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    # OpenAPI's exclusiveMinimum/Maximum are booleans beside minimum/maximum.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
        elif out.get(exclusive) is False:
            out.pop(exclusive)
    return out


def _prune(value: Any, schema: dict[str, Any], *, root: bool = False) -> Any:
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return value
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, sub in value.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                out[key] = sub  # never pruned, whatever the schema says
            elif key in props:
                out[key] = _prune(sub, props[key])
            elif isinstance(extra, dict):
                out[key] = _prune(sub, extra)
            elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                out[key] = sub
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(item, schema["items"]) for item in value]
    return value


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of an ``apiextensions.k8s.io/v1`` CustomResourceDefinition."""
    if crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"not a CustomResourceDefinition: {crd.get('kind')!r}")
    spec = crd["spec"]
    names = spec["names"]
    found = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        found.append(ResourceType(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            status_subresource="status" in (version.get("subresources") or {}),
            custom=True,
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
        ))
    return found


def load_crd_documents(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every CRD document in the YAML files ``paths`` (directories: their *.yaml files)."""
    for path in paths:
        files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() \
            else [path]
        for file in files:
            for doc in yaml.safe_load_all(file.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    yield doc


def _builtin(group: str, version: str, plural: str, kind: str, namespaced: bool,
             short: tuple[str, ...] = (), status: bool = False) -> ResourceType:
    return ResourceType(group, version, plural, kind, namespaced, singular=kind.lower(),
                        short_names=short, status_subresource=status)


#: The built-in resources served by default (stored as given: no schema, no defaults).
BUILTINS: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", False, ("ns",), status=True),
    _builtin("", "v1", "pods", "Pod", True, ("po",), status=True),
    _builtin("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    _builtin("", "v1", "secrets", "Secret", True),
    _builtin("", "v1", "services", "Service", True, ("svc",), status=True),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    _builtin("", "v1", "events", "Event", True, ("ev",)),
    _builtin("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
    _builtin("apps", "v1", "deployments", "Deployment", True, ("deploy",), status=True),
    _builtin("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), status=True),
    _builtin("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), status=True),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease", True),
    _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions",
             "CustomResourceDefinition", False, ("crd", "crds"), status=True),
)
