"""``armorflow report``: a human summary of behaviour models, on the terminal or as HTML.

For each model: entries per section, the AppArmor and Seccomp profiles it renders to,
and what the classifier collapsed (the examples a pattern replaced). The HTML page is one
self-contained file (inline CSS and SVG charts, no script, nothing fetched), so that it
opens anywhere, offline, and can be attached to a ticket.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import orjson
import typer

from armorflow.events import KINDS, Rejects
from armorflow.model import BehaviourModel
from armorflow.render import ProfileNameError, render_apparmor, render_seccomp, seccomp_json
from armorflow.users.recording import RecordingReport, read_recording
from armorflow.users.review import (
    Flag,
    ModelDiff,
    RuleProvenance,
    diff_models,
    rule_provenance,
    sensitive_rules,
)

if TYPE_CHECKING:
    from armorflow.pipeline.classifier.guard import Refusal
    from armorflow.pipeline.classifier.origins import GlobOrigin

#: One colour per event kind, the same in every chart.
KIND_COLOURS: Final = dict(
    zip(
        KINDS,
        ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
         "#ff9da7"),
        strict=True,
    )
)
TIMELINE_BINS: Final = 30


class ReportInputError(ValueError):
    """A model path that holds no model document."""


@dataclass
class NamedModel:
    name: str
    model: BehaviourModel
    source: Path


@dataclass
class RenderedModel:
    """What the report shows of one model (rendered once for the text and the HTML)."""

    named: NamedModel
    counts: dict[str, int]
    apparmor: str | None
    seccomp: str
    #: Syscalls the Seccomp profile allows (observed ones plus the runtime's start-up set).
    seccomp_allowed: list[str] = field(default_factory=list)
    render_error: str | None = None
    #: For every glob of the model: which classifier rule, feature or merge made it.
    origins: list[GlobOrigin] = field(default_factory=list)
    #: Rules kept literal because the safety policy refused the glob proposed for them.
    refusals: list[Refusal] = field(default_factory=list)
    #: Rules that reach sensitive places or powers: a human looks before enforcing.
    flags: list[Flag] = field(default_factory=list)
    #: When each rule was first seen and which workloads made it.
    provenance: list[RuleProvenance] = field(default_factory=list)

    def rules_by_source(self) -> list[tuple[str, int]]:
        """How many rules each workload made or widened, most first."""
        counts: Counter[str] = Counter(
            source.describe() for row in self.provenance for source in row.sources)
        return counts.most_common()

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.named.name, "source": str(self.named.source),
            "counts": self.counts, "apparmor": self.apparmor, "render_error": self.render_error,
            "seccomp_allowed": self.seccomp_allowed,
            "globs": [{"pattern": o.pattern, "example": o.example, "made_by": o.describe()}
                      for o in self.origins],
            "kept_literal": [{"kind": f.kind, "kept": f.kept, "perms": f.perms,
                              "refused_glob": f.glob, "proposed_by": f.via,
                              "safety_rule": f.rule.name} for f in self.refusals],
            "sensitive": [flag.to_json() for flag in self.flags],
            "provenance": [row.to_json() for row in self.provenance],
        }

    def seccomp_summary(self) -> str:
        observed = sorted(self.named.model.syscalls)
        return (
            f"allows {len(self.seccomp_allowed)} syscall(s), everything else fails with "
            f"an error; observed: {', '.join(observed) or 'none'}; the rest is what a "
            "container runtime needs to start the workload"
        )


@dataclass
class EventSummary:
    """Events of a recording per kind, over time bins spanning the recording's window."""

    by_kind: Counter[str]
    bins: list[Counter[str]]
    first_ns: int
    last_ns: int
    rejects: Rejects = field(default_factory=Rejects)
    #: What reading the recording found besides events (damage, a misleading name).
    recording: RecordingReport | None = None


# --- loading ---------------------------------------------------------------------------------


def _model_of(doc: Any) -> BehaviourModel | None:
    if not isinstance(doc, dict):
        return None
    if "dynamicResult" in doc:
        return BehaviourModel.from_dict(doc)
    if isinstance(doc.get("apparmor"), dict) or isinstance(doc.get("seccomp"), dict):
        return BehaviourModel.from_dynamic_result(doc)
    return None


def _default_name(path: Path) -> str:
    name = path.name
    for suffix in (".model.json", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_models(path: Path, skipped: list[str] | None = None) -> list[NamedModel]:
    """The models in a model file or a directory of them.

    A directory's ``*.model.json`` files, at any depth (the file sink writes
    ``DIR/NAMESPACE/NAME.model.json``), are taken if there are any, else its own
    ``*.json`` files; a JSON file that is not a model document (a Seccomp profile beside
    the model, say) is skipped and named in ``skipped``.
    """
    if path.is_dir():
        files = sorted(path.rglob("*.model.json")) or sorted(path.glob("*.json"))
        if not files:
            raise ReportInputError(f"{path} holds no *.model.json or *.json file")
    elif path.is_file():
        files = [path]
    else:
        raise ReportInputError(f"{path} does not exist")
    models: list[NamedModel] = []
    for file in files:
        try:
            doc = orjson.loads(file.read_bytes())
        except orjson.JSONDecodeError as exc:
            reason = f"{file}: not JSON ({exc})"
        else:
            try:
                model = _model_of(doc)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                model, reason = None, f"{file}: malformed model document ({exc!r})"
            else:
                reason = f"{file}: not a model document (no dynamicResult)"
            if model is not None:
                name = min(model.profiles) if model.profiles else _default_name(file)
                models.append(NamedModel(name, model, file))
                continue
        if path.is_file():
            raise ReportInputError(reason)
        if skipped is not None:
            skipped.append(reason)
    if not models:
        raise ReportInputError(f"no model document in {path}")
    return models


def render_model(named: NamedModel) -> RenderedModel:
    from armorflow.pipeline.classifier import load_default
    from armorflow.pipeline.classifier.guard import refused_collapses
    from armorflow.pipeline.classifier.origins import model_origins

    model = named.model
    profile = render_seccomp(model)
    # Allowed outright or under an argument filter; the ERRNO rules (clone3) are denials.
    allowed = sorted({name for rule in profile["syscalls"]
                      if rule.get("action") == "SCMP_ACT_ALLOW" for name in rule["names"]})
    try:
        apparmor: str | None = render_apparmor(named.name, model).text
        error = None
    except ProfileNameError as exc:
        apparmor, error = None, f"no AppArmor profile: {exc}"
    classifier = load_default()
    return RenderedModel(named, model.counts(), apparmor, seccomp_json(profile),
                         allowed, error, model_origins(model, classifier),
                         refused_collapses(model, classifier.pure_collapse),
                         sensitive_rules(model), rule_provenance(model))


def summarise_events(path: Path, bins: int = TIMELINE_BINS) -> EventSummary:
    """Count a recording's events per kind and per time bin (two passes, O(bins) memory)."""
    rejects = Rejects()
    first = last = None
    by_kind: Counter[str] = Counter()
    events, report = read_recording(path, rejects)
    for event in events:
        ts = event["ts"]
        first = ts if first is None or ts < first else first
        last = ts if last is None or ts > last else last
        by_kind[event["kind"]] += 1
    if first is None or last is None:
        return EventSummary(by_kind, [], 0, 0, rejects, report)
    span = max(1, last - first)
    counters: list[Counter[str]] = [Counter() for _ in range(bins)]
    # The second pass stops where the first did: the same damage ends it.
    for event in read_recording(path, Rejects())[0]:
        index = min(bins - 1, (event["ts"] - first) * bins // span)
        counters[index][event["kind"]] += 1
    return EventSummary(by_kind, counters, first, last, rejects, report)


# --- SVG charts -------------------------------------------------------------------------------


def bar_chart_svg(items: list[tuple[str, int]], title: str, colour: str = "#4e79a7") -> str:
    """Horizontal bars with labels and values; scales to the largest value."""
    label_w, bar_w, row_h, top = 120, 320, 22, 28
    height = top + row_h * len(items) + 8
    peak = max((v for _, v in items), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" '
        f'height="{height}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" class="chart-title">{html.escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        width = round(bar_w * value / peak)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{width}" height="{row_h - 6}" '
            f'fill="{colour}"><title>{html.escape(label)}: {value}</title></rect>'
            f'<text x="{label_w + width + 4}" y="{y + 15}">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(summary: EventSummary) -> str:
    """Stacked bars: events per kind in each time bin of the recording's window."""
    width, height, left, bottom, top = 640, 220, 48, 40, 24
    plot_w, plot_h = width - left - 10, height - top - bottom
    totals = [sum(b.values()) for b in summary.bins]
    peak = max(totals, default=0) or 1
    bin_w = plot_w / max(1, len(summary.bins))
    span_s = (summary.last_ns - summary.first_ns) / 1e9
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="events per kind over time">',
        '<text x="0" y="16" class="chart-title">Events per kind over the window</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#555"/>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
        f'<text x="{left}" y="{height - 22}">0 s</text>',
        f'<text x="{left + plot_w}" y="{height - 22}" text-anchor="end">{span_s:.1f} s</text>',
    ]
    for i, counts in enumerate(summary.bins):
        y = float(top + plot_h)
        for kind in KINDS:
            n = counts.get(kind, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(
                f'<rect x="{left + i * bin_w + 1:.1f}" y="{y:.1f}" width="{bin_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{KIND_COLOURS[kind]}"><title>{kind}: {n}</title></rect>'
            )
    x = left
    for kind in KINDS:
        if summary.by_kind.get(kind):
            parts.append(
                f'<rect x="{x}" y="{height - 12}" width="10" height="10" '
                f'fill="{KIND_COLOURS[kind]}"/><text x="{x + 14}" y="{height - 3}">{kind}</text>'
            )
            x += 24 + 8 * len(kind)
    parts.append("</svg>")
    return "".join(parts)


# --- HTML ----------------------------------------------------------------------------------

_CSS: Final = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 70em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ccc; padding: .2em .6em; text-align: left; vertical-align: top; }
td.n { text-align: right; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
svg text { font-size: 12px; font-family: sans-serif; }
svg .chart-title { font-weight: bold; font-size: 13px; }
.muted { color: #777; }
"""


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td{" class=n" if i in numeric else ""}>{html.escape(c)}</td>'
            for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(rendered: list[RenderedModel], events: EventSummary | None = None) -> str:
    """The self-contained HTML page."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>armorflow report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>armorflow behaviour model report</h1>",
        f"<p>{len(rendered)} model(s).</p>",
    ]
    if len(rendered) > 1:
        out.append('<nav id="index"><h2>Profiles</h2><ul>')
        for i, r in enumerate(rendered):
            flagged = f" ({len(r.flags)} to review)" if r.flags else ""
            out.append(f'<li><a href="#model-{i}">{html.escape(r.named.name)}</a>'
                       f"{html.escape(flagged)}</li>")
        out.append("</ul></nav>")
    if events is not None:
        out.append('<section id="events"><h2>Recorded events</h2>')
        items = [(k, events.by_kind[k]) for k in KINDS if events.by_kind.get(k)]
        out.append(f"<p>{sum(events.by_kind.values())} events over "
                   f"{(events.last_ns - events.first_ns) / 1e9:.1f} s.</p>")
        out.append(timeline_svg(events))
        out.append(bar_chart_svg(items, "Events per kind"))
        if events.rejects.count:
            out.append(f'<p class="muted">{events.rejects.count} bad line(s) skipped.</p>')
        out.append("</section>")
    for i, r in enumerate(rendered):
        name = html.escape(r.named.name)
        out.append(f'<section class="model" id="model-{i}"><h2>Profile <code>{name}</code>'
                   "</h2>")
        out.append(f'<p class="muted">from {html.escape(str(r.named.source))}</p>')
        out.append(_table(["section", "entries"],
                          [[k, str(v)] for k, v in r.counts.items()], numeric={1}))
        out.append(bar_chart_svg(list(r.counts.items()), "Entries per section"))
        out.append("<h3>Rules to review before enforcing</h3>")
        if r.flags:
            out.append(_table(["kind", "rule", "why", "first seen, by"],
                              [[f.kind, f.rule, f.why,
                                f.provenance.describe() if f.provenance else "unknown"]
                               for f in r.flags]))
        else:
            out.append('<p class="muted">no rule reaches a sensitive place or power</p>')
        out.append("<h3>Where each rule came from</h3>")
        if r.provenance:
            out.append(_table(["rules", "workload (namespace/pod/container on node)"],
                              [[str(n), who] for who, n in r.rules_by_source()],
                              numeric={0}))
            out.append(_table(
                ["kind", "rule", "first seen (UTC)", "node", "namespace", "pod", "container"],
                [[row.kind, row.rule, row.first_seen(), source.node, source.namespace,
                  source.pod, source.container]
                 for row in r.provenance for source in row.sources or ()]))
        else:
            out.append('<p class="muted">this model carries no provenance (made before '
                       "armorflow recorded it)</p>")
        out.append("<h3>Collapsed by the classifier (before &rarr; after)</h3>")
        collapsed = sorted(r.named.model.collapsed.items())
        if collapsed:
            out.append(_table(["examples (before)", "pattern (after)"],
                              [[", ".join(sorted(ex)), p] for p, ex in collapsed]))
        else:
            out.append('<p class="muted">nothing was collapsed</p>')
        out.append("<h3>Globs and what made them</h3>")
        if r.origins:
            out.append(_table(["glob", "example", "made by"],
                              [[o.pattern, o.example or "", o.describe()] for o in r.origins]))
        else:
            out.append('<p class="muted">no glob</p>')
        out.append("<h3>Kept literal by the safety policy</h3>")
        if r.refusals:
            out.append(_table(
                ["kind", "kept", "permissions", "refused glob", "proposed by", "safety rule"],
                [[f.kind, f.kept, f.perms, f.glob, f.via, f"{f.rule.name}: {f.rule.why}"]
                 for f in r.refusals]))
        else:
            out.append('<p class="muted">no collapse was refused</p>')
        out.append("<h3>AppArmor profile</h3>")
        if r.apparmor is not None:
            out.append(f"<pre>{html.escape(r.apparmor)}</pre>")
        else:
            out.append(f'<p class="muted">{html.escape(r.render_error or "")}</p>')
        out.append(f"<h3>Seccomp profile</h3><p>{html.escape(r.seccomp_summary())}.</p>"
                   f"<pre>{html.escape(r.seccomp)}</pre></section>")
    out.append("</body></html>")
    return "\n".join(out)


# --- terminal ------------------------------------------------------------------------------


def print_report(rendered: list[RenderedModel], events: EventSummary | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    if events is not None:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(events.by_kind.items()))
        console.print(f"recording: {sum(events.by_kind.values())} events ({kinds}) over "
                      f"{(events.last_ns - events.first_ns) / 1e9:.1f} s")
    for r in rendered:
        console.rule(f"profile {r.named.name}")
        console.print(f"from {r.named.source}", style="dim")
        counts = Table("section", "entries", show_edge=False)
        for section, n in r.counts.items():
            counts.add_row(section, str(n))
        console.print(counts)
        collapsed = sorted(r.named.model.collapsed.items())
        console.print(f"collapsed by the classifier: {len(collapsed)} pattern(s)")
        for pattern, examples in collapsed:
            console.print(f"  {', '.join(sorted(examples))}  ->  {pattern}", markup=False)
        console.print(f"globs and what made them: {len(r.origins)}")
        for origin in r.origins:
            console.print(f"  {origin.pattern}: {origin.describe()}", markup=False)
        console.print(f"rules to review before enforcing: {len(r.flags)}")
        for flag in r.flags:
            console.print(f"  [{flag.kind}] {flag.rule}: {flag.why}", markup=False)
            if flag.provenance is not None:
                console.print(f"      {flag.provenance.describe()}", markup=False)
        console.print(f"rules by the workload that made them ({len(r.provenance)} with "
                      "provenance; each rule in -o json and --html):")
        for who, n in r.rules_by_source():
            console.print(f"  {n:6d}  {who}", markup=False)
        console.print(f"kept literal by the safety policy: {len(r.refusals)} rule(s)")
        for refused in r.refusals:
            console.print(f"  {refused.describe()}", markup=False)
        if r.apparmor is not None:
            console.print("AppArmor profile:", style="bold")
            console.print(r.apparmor, markup=False)
        else:
            console.print(r.render_error or "", style="yellow")
        console.print("Seccomp profile:", style="bold")
        console.print(r.seccomp_summary(), markup=False, soft_wrap=False)
        console.print(", ".join(r.seccomp_allowed), markup=False, soft_wrap=False)


class ReportFormat(StrEnum):
    text = "text"
    json = "json"


def report(
    model_paths: Annotated[
        list[Path],
        typer.Argument(metavar="MODEL_OR_DIR...",
                       help="Model JSON files or directories of them."),
    ],
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False,
                     help="A recording: chart its events per kind over the window."),
    ] = None,
    output: Annotated[ReportFormat, typer.Option(
        "--output", "-o", help="text for people, json for tools.")] = ReportFormat.text,
    diff: Annotated[bool, typer.Option(
        "--diff", help="Compare two models (BEFORE AFTER): entries added, removed, "
                       "changed. Exit status 1 when they differ.")] = False,
) -> None:
    """Summarise behaviour models: entries per section, rules to review, what was collapsed
    and why; or, with --diff, what changed between two models."""
    skipped: list[str] = []
    try:
        models = [m for path in model_paths for m in load_models(path, skipped)]
    except ReportInputError as exc:
        raise typer.BadParameter(str(exc), param_hint="MODEL_OR_DIR") from None
    for reason in skipped:
        typer.echo(f"skipped {reason}", err=True)
    if diff:
        _report_diff(models, output)
        return
    rendered = [render_model(m) for m in models]
    summary = summarise_events(events) if events is not None else None
    if summary is not None and summary.rejects.count:
        typer.echo(f"skipped {summary.rejects.count} bad line(s) of {events}", err=True)
    if summary is not None and summary.recording is not None:
        for note in summary.recording.notes("summarised what was read"):
            typer.echo(note, err=True)
    if output is ReportFormat.json:
        typer.echo(orjson.dumps({"models": [r.to_json() for r in rendered]},
                                option=orjson.OPT_INDENT_2).decode())
    else:
        print_report(rendered, summary)
    if html_out is not None:
        html_out.write_text(html_report(rendered, summary), encoding="utf-8")
        typer.echo(f"wrote {html_out}", err=output is ReportFormat.json)


def _report_diff(models: list[NamedModel], output: ReportFormat) -> None:
    if len(models) != 2:
        raise typer.BadParameter(f"--diff compares two models; {len(models)} given",
                                 param_hint="MODEL_OR_DIR")
    before, after = models
    changes: ModelDiff = diff_models(before.model, after.model)
    if output is ReportFormat.json:
        typer.echo(orjson.dumps({"before": str(before.source), "after": str(after.source),
                                 **changes.to_json()}, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(f"--- {before.source}\n+++ {after.source}")
        for line in changes.lines():
            typer.echo(line)
        typer.echo(f"{len(changes.added)} added, {len(changes.removed)} removed, "
                   f"{len(changes.changed)} changed")
    if not changes.same:
        raise typer.Exit(1)
