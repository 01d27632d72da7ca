"""Hand a closed window to a sink, and the offline writer of ``armorflow model``."""

from __future__ import annotations

from pathlib import Path

import orjson

from armorflow.pipeline.stages import ClosedWindow


def write_offline(out: Path, closed: ClosedWindow) -> list[Path]:
    """Write a profile's model, AppArmor profile and Seccomp profile into ``out``."""
    written = []
    model_path = out / f"{closed.profile}.model.json"
    model_path.write_bytes(
        orjson.dumps(closed.model.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    written.append(model_path)
    if closed.apparmor is not None:
        aa = out / f"{closed.profile}.apparmor"
        aa.write_text(closed.apparmor)
        written.append(aa)
    if closed.seccomp is not None:
        sc = out / f"{closed.profile}.seccomp.json"
        sc.write_bytes(orjson.dumps(closed.seccomp, option=orjson.OPT_INDENT_2))
        written.append(sc)
    return written


def deliver_closed_window(url: str, closed: ClosedWindow) -> dict[str, str] | None:
    """Write ``closed`` to the sink named by ``url``; returns the resource's reference."""
    if url.startswith("file://"):
        out = Path(url.removeprefix("file://"))
        out.mkdir(parents=True, exist_ok=True)
        write_offline(out, closed)
        return {"namespace": closed.namespace, "name": closed.profile}
    raise ValueError(f"unsupported sink {url!r}")
