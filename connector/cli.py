"""`connector`: run a night, explain a lead, migrate the ledger.

Exit codes, for schedulers:
  0  the run finished; every lead is done or skipped with its reason
  2  configuration or mapping error: nothing was enriched or written; fix and re-run
  3  the run finished but some leads are deferred or failed; they are retried next night
     (`connector explain LEAD` says why)
  1  an unexpected error (a bug): the ledger keeps every lead's state
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from connector.errors import ConfigError, ConnectorError, MappingError
from connector.ledger import Ledger, open_ledger
from connector.ledger import migrate as migrate_ledger
from connector.pipeline import RunReport, current_window, enabled_sources, run_source
from connector.redaction import install_log_redaction, redact, register_secrets
from connector.services import open_services
from connector.settings import Settings, load_settings

EXIT_OK, EXIT_BUG, EXIT_CONFIG, EXIT_PARTIAL = 0, 1, 2, 3

app = typer.Typer(
    help="Enrich new CRM leads every night under one budget, write each value once, and explain every field.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Settings file (default: $CONNECTOR_CONFIG, else config/settings.example.yaml)."),
]


def _load(config: Path | None, **overrides: Any) -> Settings:
    settings = load_settings(config, **overrides)
    register_secrets(settings.secret_values())
    install_log_redaction(settings.log_level)
    return settings


@contextmanager
def _vendors(config: Path | None) -> Iterator[Settings]:
    """The settings, pointed at the sandbox emulators when sandbox.enabled (started here)."""
    settings = _load(config)
    if not settings.sandbox.enabled:
        yield settings
        return
    from connector.sandbox import Sandbox  # noqa: PLC0415  (only the embedded default needs it)

    state_dir = settings.data_dir / "sandbox" if settings.sandbox.persist else None
    with Sandbox(state_dir=state_dir, time_scale=settings.time_scale) as sandbox:
        yield _load(config, **sandbox.overrides())


def _fail(exc: ConnectorError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {redact(str(exc))}", highlight=False)
    return typer.Exit(EXIT_CONFIG if isinstance(exc, (ConfigError, MappingError)) else EXIT_BUG)


def _print_report(report: RunReport) -> None:
    table = Table(title=f"{report.source}: run {report.run_id} ({report.window.kind})", title_justify="left")
    table.add_column("lead state")
    table.add_column("reason")
    table.add_column("leads", justify="right")
    for label, count in sorted(report.states.items()):
        state, _, reason = label.partition("(")
        table.add_row(state, reason.rstrip(")"), str(count))
    if not report.states:
        table.add_row("no new leads", "", "0")
    console.print(table)
    calls = ", ".join(f"{k} {v}" for k, v in sorted(report.calls.items()))
    credits = ", ".join(f"{k} {v}" for k, v in sorted(report.credits.items())) or "0"
    console.print(f"vendor calls: {calls} · credits spent: {credits} · fields written: "
                  f"{report.fields_written} · time: {report.seconds:.1f} s\n", highlight=False)


@app.command()
def run(
    config: ConfigOption = None,
    scheduled: Annotated[bool, typer.Option(
        "--scheduled",
        help="Started by the scheduler: tonight's run, at most once per source and night "
        "(a second start is a no-op). Without it, a manual run with its own run id.")] = False,
) -> None:
    """Run one night now: poll new leads from every enabled CRM, enrich, write back, record.

    Inside the nightly window (00:00-02:00 UTC by default) the run ends with that window;
    outside it, it gets a window of the same length starting now."""
    try:
        with _vendors(config) as settings:
            services = open_services(settings)
            ledger, limiter = services.ledger, services.limiter
            window = current_window(settings, scheduled=scheduled)
            console.print(
                f"[bold]{window.kind} run[/] {window.start:%Y-%m-%d %H:%M}–{window.end:%H:%M} UTC"
                + (" [dim](sandbox emulators)[/]" if settings.sandbox.enabled else ""),
                highlight=False,
            )
            reports: list[RunReport] = []
            for source in enabled_sources(settings):
                with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=console, transient=True) as progress:
                    task = progress.add_task(f"{source}: enriching", total=None)
                    report = run_source(
                        settings, ledger, limiter, source, window=window, context=services.context(),
                        progress=lambda done, total: progress.update(task, completed=done, total=total),
                    )
                if report is None:
                    console.print(f"{source}: tonight's run already exists; nothing to do (a duplicate start)")
                    continue
                reports.append(report)
            for report in reports:
                _print_report(report)
            unfinished = sum(n for r in reports for k, n in r.states.items() if k.startswith(("deferred", "failed")))
            if unfinished:
                console.print(f"{unfinished} lead(s) deferred or failed; they go first next night. "
                              "`connector explain LEAD` tells why.")
                raise typer.Exit(EXIT_PARTIAL)
    except ConnectorError as exc:
        raise _fail(exc) from None


@app.command()
def explain(
    lead: Annotated[str, typer.Argument(help="The lead's CRM record id or its email address.")],
    config: ConfigOption = None,
) -> None:
    """What happened to a lead, and why: its states, every field decision, the providers asked."""
    try:
        settings = _load(config)
        ledger = open_ledger(settings.ledger_url)
    except ConnectorError as exc:
        raise _fail(exc) from None
    leads = ledger.find_leads(key=lead)
    if not leads:
        console.print(f"No lead with record id or email '{lead}' is in the ledger. It was not polled yet "
                      "(created before the watermark, or after the last run), or the id is wrong.")
        raise typer.Exit(EXIT_CONFIG)
    for row in leads:
        _explain_one(ledger, row)


def _explain_one(ledger: Ledger, row: Any) -> None:
    console.print(Panel.fit(
        f"[bold]{row.source}[/] record [bold]{_short(row.record_id)}[/]  email: {_short(row.email) or '(blank)'}\n"
        f"state: [bold]{row.state}[/]" + (f" ({row.reason})" if row.reason else "")
        + f"  attempts: {row.attempts}" + (f"  next attempt: {row.next_attempt_at:%Y-%m-%d %H:%M} UTC" if row.next_attempt_at else "")
        + (f"\n{_short(row.detail, 400)}" if row.detail else ""),
        title="lead",
    ))
    history = Table(title="history")
    for column in ("when (UTC)", "via", "run", "state", "reason", "detail"):
        history.add_column(column)
    for event in ledger.lead_events(lead_id=row.id):
        history.add_row(f"{event.at:%Y-%m-%d %H:%M:%S}", event.via, str(event.run_id or ""), event.state,
                        event.reason, _short(event.detail, 120))
    console.print(history)
    writes = ledger.field_writes(lead_id=row.id)
    if not writes:
        console.print("No field decisions recorded (the lead was not enriched).")
        return
    latest_run = max((w.run_id or 0) for w in writes)
    table = Table(title=f"fields (run {latest_run})")
    for column in ("field", "decision", "reason", "CRM value before", "new value", "from", "write state"):
        table.add_column(column)
    for w in writes:
        if (w.run_id or 0) != latest_run:
            continue
        table.add_row(w.field, w.decision, w.reason, _short(w.old_value), _short(w.new_value),
                      _short(w.rule), w.state if w.decision == "write" else "")
    console.print(table)
    earlier = [w for w in writes if w.decision == "write" and (w.run_id or 0) != latest_run]
    for w in earlier:
        console.print(f"earlier: run {w.run_id} wrote {w.field} = {_short(w.new_value)} ({w.state}, {w.reason})")


def _short(value: Any, width: int = 60) -> str:
    """Lead data shown safely: cut to `width`, and never read as rich markup."""
    text = "" if value is None else str(value)
    return escape(text if len(text) <= width else text[: width - 3] + "...")


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Apply the ledger's database migrations (run once per upgrade; SQLite does it by itself)."""
    try:
        settings = _load(config)
        revision = migrate_ledger(settings.ledger_url)
    except ConnectorError as exc:
        raise _fail(exc) from None
    console.print(f"ledger at migration {revision}")


def main() -> None:  # pragma: no cover
    try:
        app()
    except Exception:
        logging.getLogger("connector").exception("unexpected error")
        sys.exit(EXIT_BUG)
