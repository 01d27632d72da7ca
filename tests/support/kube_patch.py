"""The PATCH bodies clients send: JSON merge patch, JSON patch, and strategic merge.

Strategic merge patch is served for built-in resources only, approximated as a JSON merge
patch (lists are replaced, ``$patch`` directives are not understood); the API server
refuses it for custom resources, and so does the emulator.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


class PatchError(ValueError):
    """A patch that cannot be applied (the API server answers 422 or 400)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 operations applied to a copy of ``target``."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    try:
        patched = jsonpatch.apply_patch(target, operations, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError,
            KeyError, IndexError) as exc:
        raise PatchError(f"the JSON patch cannot be applied: {exc}") from exc
    if not isinstance(patched, dict):
        raise PatchError("the JSON patch replaced the object with a non-object")
    return patched


def apply_patch(content_type: str, target: dict[str, Any], body: Any, *,
                custom: bool) -> dict[str, Any]:
    """``target`` patched by ``body`` sent as ``content_type``; raises :class:`PatchError`."""
    media = content_type.split(";")[0].strip().lower()
    if media == JSON_PATCH:
        return json_patch(target, body)
    if media == MERGE or (media == STRATEGIC and not custom):
        if not isinstance(body, dict):
            raise PatchError("a merge patch must be a JSON object")
        patched = merge_patch(target, body)
        assert isinstance(patched, dict)
        return patched
    raise UnsupportedPatch(media, custom=custom)


class UnsupportedPatch(PatchError):
    """A patch type the emulator does not serve (415 UnsupportedMediaType)."""

    def __init__(self, media: str, *, custom: bool) -> None:
        accepted = f"{JSON_PATCH}, {MERGE}" + ("" if custom else f", {STRATEGIC}")
        why = " (server-side apply is not emulated)" if media == APPLY else ""
        super().__init__(
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {accepted}{why}"
        )
