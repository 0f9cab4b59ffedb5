"""`connector`: run a night, explain a lead, migrate the ledger.

Exit codes, for schedulers:
  0  the run finished; every lead is done or skipped with its reason
  2  configuration, mapping or input error (a malformed record id, a bad date): nothing was
     enriched or written; fix and re-run
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

from connector.errors import ConfigError, ConnectorError, InputError, MappingError
from connector.ledger import Ledger, open_ledger
from connector.ledger import migrate as migrate_ledger
from connector.pipeline import RunReport, current_window, enabled_sources, planned_night, run_source
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
    # escape(): the message may hold what a person typed (a record id with "[" in it is no markup).
    err_console.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", highlight=False)
    return typer.Exit(EXIT_CONFIG if isinstance(exc, (ConfigError, MappingError, InputError)) else EXIT_BUG)


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
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Spend nothing, write nothing: per lead the fields that would be filled, changed or "
        "left alone and why, then the forecast of calls, credits and time.")] = False,
) -> None:
    """Run one night now: poll new leads from every enabled CRM, enrich, write back, record.

    Inside the nightly window (00:00-02:00 UTC by default) the run ends with that window;
    outside it, it gets a window of the same length starting now."""
    try:
        with _vendors(config) as settings:
            services = open_services(settings)
            ledger, limiter = services.ledger, services.limiter
            window = current_window(settings, scheduled=scheduled)
            _preflight(settings, services)
            if dry_run:
                for source in enabled_sources(settings):
                    _print_preview(source, _dry_run(settings, services, source, None), settings)
                return
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
    from connector.admin import lead_story  # noqa: PLC0415

    story = lead_story(ledger, row)
    history = Table(title="history")
    for column in ("when (UTC)", "via", "run", "state", "reason", "detail"):
        history.add_column(column)
    for event in story.history:
        history.add_row(f"{event.at:%Y-%m-%d %H:%M:%S}", event.via, str(event.run_id or ""), event.state,
                        event.reason, _short(event.detail, 120))
    console.print(history)
    if story.latest_run is None:
        console.print("No field decisions recorded (the lead was not enriched).")
        return
    table = Table(title=f"fields (run {story.latest_run})")
    for column in ("field", "decision", "reason", "CRM value before", "new value", "from", "write state"):
        table.add_column(column)
    for w in story.fields:
        table.add_row(w.field, w.decision, w.reason, _short(w.old_value), _short(w.new_value),
                      _short(w.rule), w.write_state or "")
    console.print(table)
    for w in story.earlier_writes:
        console.print(f"earlier: run {w.run_id} wrote {w.field} = {_short(w.new_value)} ({w.write_state}, {w.reason})")


def _short(value: Any, width: int = 60) -> str:
    """Lead data shown safely: cut to `width`, and never read as rich markup."""
    text = "" if value is None else str(value)
    return escape(text if len(text) <= width else text[: width - 3] + "...")


def _print_preview(source: str, run: Any, settings: Settings) -> None:
    from connector.forecast import forecast  # noqa: PLC0415

    for lead in run.preview:
        table = Table(title=f"{source} {_short(lead.record_id)} {_short(lead.email)}: {lead.outcome}"
                      + (f" — needs {sum(lead.needs_credits.values())} credit(s)" if lead.needs_credits else ""),
                      title_justify="left")
        for column in ("field", "would", "reason", "CRM value now", "value", "from"):
            table.add_column(column)
        for d in lead.decisions:
            would = ("fill" if d.current_value in (None, "") else "change") if d.write else "leave"
            table.add_row(d.field, would, d.reason, _short(d.current_value), _short(d.new_value), _short(d.rule))
        if lead.detail and not lead.decisions:
            table.add_row("", "", "", "", "", _short(lead.detail, 100))
        console.print(table)
    f = forecast(settings, source, run)
    summary = Table(title=f"{source}: forecast for {f.leads} lead(s)", title_justify="left")
    for column in ("vendor", "calls", "time at the configured limits"):
        summary.add_column(column)
    for vendor, calls in sorted(f.calls.items()):
        summary.add_row(vendor, str(calls), f"{f.seconds[vendor]:.0f} s")
    console.print(summary)
    credits = ", ".join(f"{pool}: {n}" for pool, n in sorted(f.credits.items())) or "none"
    console.print(f"credits needed: {credits} · time: {f.total_seconds:.0f} s (vendors run in parallel)\n",
                  highlight=False)


def _preflight(settings: Settings, services: Any) -> None:
    """check-mappings before anything is spent: a mapping that does not fit the CRM stops the run."""
    from connector.checks import check_mapping_against_schema  # noqa: PLC0415

    problems = [p for source in enabled_sources(settings) for p in check_mapping_against_schema(settings, services, source)]
    if problems:
        raise MappingError("the mappings do not fit the CRM schema:\n  " + "\n  ".join(problems),
                           fix="correct each field named above (`connector check-mappings` lists them)")


def _dry_run(settings: Settings, services: Any, source: str, record_ids: list[str] | None) -> Any:
    from connector.pipeline import run_once  # noqa: PLC0415

    return run_once(settings, services.ledger, services.limiter, source, via="dry_run", mode="dry_run",
                    record_ids=record_ids, context=services.context())


@app.command()
def resync(
    leads: Annotated[list[str] | None, typer.Argument(help="Record ids or email addresses.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="A file of record ids or emails, one per line.")] = None,
    created_from: Annotated[str | None, typer.Option("--from", help="Leads created on or after (YYYY-MM-DD).")] = None,
    created_to: Annotated[str | None, typer.Option("--to", help="... and before (YYYY-MM-DD).")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Every lead whose last attempt failed.")] = False,
    deferred: Annotated[bool, typer.Option("--deferred", help="Every deferred lead (window end, quota, credits).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Only leads with this reason, e.g. credits_exhausted.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this CRM (salesforce, hubspot, marketo).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Spend nothing, write nothing: show the per-field "
                                          "changes and the credits it would need.")] = False,
    config: ConfigOption = None,
) -> None:
    """Re-sync leads now, through the same limiter and ledger as the night: a re-sync never writes
    a value twice and never blows a budget. Pick leads by id/email, file, created-date range, or
    every failed/deferred lead (optionally by reason)."""
    from datetime import datetime, timezone  # noqa: PLC0415

    from connector.admin import resync_now, select_for_resync  # noqa: PLC0415

    keys = list(leads or [])
    if file is not None:
        if not file.exists():
            err_console.print(f"[bold red]error:[/] {file} does not exist (fix: give a file of ids or emails, one per line)")
            raise typer.Exit(EXIT_CONFIG)
        keys += [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    states = tuple(s for s, on in (("failed", failed), ("deferred", deferred)) if on)
    if not (keys or states or created_from or created_to):
        err_console.print("[bold red]error:[/] say which leads: ids or emails, --file, --from/--to, --failed or --deferred")
        raise typer.Exit(EXIT_CONFIG)

    def day(text: str | None, option: str) -> datetime | None:
        if text is None:
            return None
        try:
            return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        except ValueError:
            err_console.print(f"[bold red]error:[/] {option} '{text}' is not a date (fix: use YYYY-MM-DD)")
            raise typer.Exit(EXIT_CONFIG) from None

    start, end = day(created_from, "--from"), day(created_to, "--to")
    try:
        with _vendors(config) as settings:
            services = open_services(settings)
            selection = select_for_resync(services.ledger, keys, source=source, states=states, reason=reason,
                                          created_from=start, created_to=end)
            for key in selection.unknown:
                console.print(f"'{_short(key)}' is not in the ledger; give --source to re-sync it by record id")
            if not selection.by_source:
                console.print("no lead matches; nothing to do")
                return
            unfinished = 0
            for name, ids in selection.by_source.items():
                if dry_run:
                    _print_preview(name, _dry_run(settings, services, name, ids), settings)
                    continue
                states_now = resync_now(settings, services, name, ids)
                console.print(f"{name}: re-synced {len(ids)} lead(s): "
                              + ", ".join(f"{k} {v}" for k, v in sorted(states_now.items())), highlight=False)
                unfinished += sum(v for k, v in states_now.items() if k.startswith(("deferred", "failed")))
            if unfinished:
                raise typer.Exit(EXIT_PARTIAL)
    except ConnectorError as exc:
        raise _fail(exc) from None


@app.command("check-mappings")
def check_mappings(config: ConfigOption = None) -> None:
    """Check every enabled CRM's mapping file against the live CRM schema: each field exists, is
    writable, and its value type, length and picklist fit. Spends no credit."""
    from connector.checks import check_mapping_against_schema  # noqa: PLC0415

    try:
        with _vendors(config) as settings:
            services = open_services(settings)
            problems = 0
            for source in enabled_sources(settings):
                found = check_mapping_against_schema(settings, services, source)
                for line in found:
                    err_console.print(f"[bold red]problem:[/] {redact(line)}", highlight=False)
                problems += len(found)
                if not found:
                    console.print(f"{source}: mapping fits the CRM schema")
            if problems:
                raise typer.Exit(EXIT_CONFIG)
    except ConnectorError as exc:
        raise _fail(exc) from None


@app.command()
def plan(config: ConfigOption = None) -> None:
    """Tonight's plan without spending anything: new leads, calls each vendor will need, credits,
    and the time at the configured limits against the time left in the window."""
    from datetime import datetime, timezone  # noqa: PLC0415

    from connector.forecast import forecast  # noqa: PLC0415

    try:
        with _vendors(config) as settings:
            services = open_services(settings)
            window = current_window(settings, scheduled=True)
            left = (window.end - datetime.now(timezone.utc)).total_seconds()
            night = planned_night(settings, window)
            for source in enabled_sources(settings):
                run = _dry_run(settings, services, source, None)
                f = forecast(settings, source, run, night=night)
                table = Table(title=f"{source}: {f.leads} lead(s) to process", title_justify="left")
                for column in ("vendor", "calls", "time at its limit"):
                    table.add_column(column)
                for vendor, calls in sorted(f.calls.items()):
                    table.add_row(vendor, str(calls), f"{f.seconds[vendor]:.0f} s")
                console.print(table)
                credits = ", ".join(f"{p}: {n}" for p, n in sorted(f.credits.items())) or "none"
                console.print(f"credits: {credits} · needs {f.total_seconds:.0f} s of the {max(left, 0):.0f} s left "
                              f"in the window ending {window.end:%H:%M} UTC", highlight=False)
                if f.total_seconds > left and f.leads:
                    fits = int(f.leads * max(left, 0) / f.total_seconds)
                    console.print(f"[bold yellow]will not fit:[/] about {f.leads - fits} lead(s), the newest; "
                                  "they are deferred (window_end) and go first next night")
                _print_credit_plan(f, night)
    except ConnectorError as exc:
        raise _fail(exc) from None


def _print_credit_plan(f: Any, night: str) -> None:
    if not f.credits:
        return
    table = Table(title=f"credits for the night of {night}", title_justify="left")
    for column in ("pool", "needed", "may spend", "limited by"):
        table.add_column(column)
    for pool, need in sorted(f.credits.items()):
        left, limit = f.credits_left.get(pool, (None, "no budget"))
        table.add_row(pool, str(need), "unlimited" if left is None else str(left), limit)
    console.print(table)
    for pool, short in sorted(f.credits_short().items()):
        console.print(f"[bold yellow]will not fit:[/] {pool} needs {short} credit(s) more than it may spend; the "
                      "leads it cannot pay for wait as credits_exhausted (the oldest go first) for the next night "
                      "or `connector resync --deferred --reason credits_exhausted`")


ledger_app = typer.Typer(help="What the ledger knows: runs, leads per state and reason, spend per vendor and day.",
                         no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("runs")
def ledger_runs(config: ConfigOption = None, limit: int = 20) -> None:
    """The latest runs with their outcome."""
    ledger = open_ledger(_load(config).ledger_url)
    table = Table(title="runs")
    for column in ("id", "run", "kind", "status", "started (UTC)", "leads by state", "credits"):
        table.add_column(column)
    for run in ledger.runs(limit=limit):
        states = run.report.get("states", {}) if run.report else {}
        table.add_row(str(run.id), _short(run.run_key), run.kind, run.status, f"{run.started_at:%Y-%m-%d %H:%M}",
                      ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
                      _short(run.report.get("credits", "")) if run.report else "")
    console.print(table)


@ledger_app.command("states")
def ledger_states(config: ConfigOption = None, source: str | None = None) -> None:
    """How many leads are in each state, with each reason."""
    ledger = open_ledger(_load(config).ledger_url)
    table = Table(title="leads")
    for column in ("source", "state", "reason", "leads"):
        table.add_column(column)
    for src, state, reason, count in ledger.state_counts(source=source):
        table.add_row(src, state, reason, str(count))
    console.print(table)


@ledger_app.command("spend")
def ledger_spend(config: ConfigOption = None, vendor: str | None = None) -> None:
    """Calls and credits per vendor, pool and day (on the vendor's own clock)."""
    ledger = open_ledger(_load(config).ledger_url)
    table = Table(title="spend")
    for column in ("day", "vendor", "pool", "calls", "credits"):
        table.add_column(column)
    for row in ledger.spend(vendor=vendor):
        table.add_row(row.day, row.vendor.split(":")[0], row.pool, str(row.calls), str(row.credits))
    console.print(table)


@ledger_app.command("budgets")
def ledger_budgets(config: ConfigOption = None, pool: str | None = None) -> None:
    """Credits used per pool and budget period (night, month, the balance read before a night)."""
    ledger = open_ledger(_load(config).ledger_url)
    table = Table(title="credit budgets")
    for column in ("pool", "period", "used", "cap", "left"):
        table.add_column(column)
    for row in ledger.budget_use(pool=pool):
        left = "" if row.cap is None else str(max(row.cap - row.used, 0))
        table.add_row(row.pool, row.period, str(row.used), "none" if row.cap is None else str(row.cap), left)
    console.print(table)


@ledger_app.command("circuits")
def ledger_circuits(
    clear: Annotated[str | None, typer.Option("--clear", help="Re-open a provider, credit pool (sixsense:enrichment) "
                                              "or vendor (sixsense: all of its pools) after a top-up or a new token.")] = None,
    config: ConfigOption = None,
) -> None:
    """Providers, credit pools and vendor tokens stopped by exhausted credits, a spent daily quota or a
    refused token, and clearing them."""
    from datetime import datetime, timezone  # noqa: PLC0415

    ledger = open_ledger(_load(config).ledger_url)
    if clear:
        cleared = ledger.clear_circuits(name=clear)
        for key in cleared:
            console.print(f"{key}: cleared; its deferred leads go with the next run or `connector resync --deferred`")
        if not cleared:
            console.print(f"{clear}: was not stopped")
        return
    circuits = ledger.open_circuits(now=datetime.now(timezone.utc))
    if not circuits:
        console.print("no provider is stopped")
    for name, c in circuits.items():
        console.print(f"{name}: stopped since {c.opened_at:%Y-%m-%d %H:%M} UTC ({c.reason}) "
                      + (f"until {c.until:%Y-%m-%d %H:%M} UTC" if c.until else "until cleared") + f": {_short(c.detail, 200)}")


@app.command()
def webhook(
    config: ConfigOption = None,
    celery: Annotated[bool, typer.Option("--celery", help="Finish slow leads as Celery tasks (the realtime "
                                         "queue) instead of in this process.")] = False,
) -> None:
    """Serve the Marketo "Person is Created" webhook (settings: webhook.*)."""
    from connector.webhook import celery_submit, serve  # noqa: PLC0415

    try:
        settings = _load(config)
        serve(settings, submit=celery_submit() if celery else None)
    except ConnectorError as exc:
        raise _fail(exc) from None


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
