"""Users' verbs: record and replay event streams, query them with SQL, report on models.

Each verb lives in its own module; the main CLI calls :func:`register`.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``record``, ``replay``, ``query`` and ``report`` to ``app``."""
    from armorflow.users.query import query
    from armorflow.users.record import record
    from armorflow.users.replay import replay
    from armorflow.users.report import report

    app.command("record")(record)
    app.command("replay")(replay)
    app.command("query")(query)
    app.command("report")(report)
