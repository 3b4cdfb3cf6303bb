"""The `vigie` command line: triage files, work the approval queue, validate playbooks."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import indent
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from agent.actions import typed_like
from agent.approvals import approved_by, person
from agent.dispositions import Closing
from agent.errors import (
    ApprovalError,
    AuthError,
    BadInput,
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    Transient,
    VigieError,
)
from agent.models import RISK_RANK, ActionProposal, Incident, ProposalState
from agent.playbooks import load_playbooks
from agent.queue import ApprovalQueue
from agent.settings import Settings, load_settings, shown_url
from agent.store import Store, incident_record, open_store
from agent.terminal import (
    assessed,
    audit_table,
    belonging,
    factors_table,
    incidents_table,
    plain,
    proposals_table,
    rejected_table,
    some,
    text,
    timeline_table,
)
from connectors.files import decompressed as decompress

app = typer.Typer(
    help="Vigie: SOC alert triage that never acts without a human's approval.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
approvals_app = typer.Typer(help="Work the approval queue.", no_args_is_help=True)
playbooks_app = typer.Typer(help="Playbook tools.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit trail tools.", no_args_is_help=True)
incidents_app = typer.Typer(
    help="Read incidents in priority order, close them with a verdict.", no_args_is_help=True
)
app.add_typer(approvals_app, name="approvals")
app.add_typer(incidents_app, name="incidents")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(audit_app, name="audit")

out = Console(width=max(140, Console().width))
T = TypeVar("T")
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Errors quote input (paths, field values): printed as text, never as rich markup."""
    lines = "\n".join(map(plain, message.split("\n")))  # a settings error spans lines
    err.print(f"[bold red]error:[/] {escape(lines)}", highlight=False)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except (ConfigError, ValueError) as exc:
        raise _fail("invalid settings:\n" + indent(str(exc), "  ")) from exc


def _store(settings: Settings) -> Store:
    """The store VIGIE_STORE_URL names, or a clear error (a path that cannot hold a database,
    an unknown scheme)."""
    try:
        return open_store(settings.store_url)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc


#: The person's own API token (one of VIGIE_API_TOKENS), which proves `--as` in production.
TOKEN_VARIABLE = "VIGIE_TOKEN"


def _person(settings: Settings, who: str) -> tuple[str, str | None]:
    """Who a decision is recorded for, and their API role. In production the command line
    proves it as the API does, with the person's API token (`VIGIE_TOKEN`, or typed when
    asked): a name typed alone let one person approve a high-risk action as two approvers,
    and an analyst tune as a lead. In development, `--as` is taken as given, with no role
    (a local operator's: tuning allowed)."""
    if settings.env != "production":
        return who, None
    from agent.api.auth import ApiTokens

    if not settings.api_tokens.get_secret_value().strip():
        raise _fail("production: a decision needs your API token, and VIGIE_API_TOKENS has none", 1)
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token and sys.stdin.isatty():
        token = typer.prompt(f"{who}'s API token", hide_input=True, default="", show_default=False)
    if not token:
        raise _fail(f"production: set {TOKEN_VARIABLE} to your API token (VIGIE_API_TOKENS)", 1)
    try:
        principal = ApiTokens(settings.api_tokens.get_secret_value()).identify(f"Bearer {token}")
    except (AuthError, ConfigError) as exc:
        raise _fail(f"{TOKEN_VARIABLE}: {exc}", 1) from exc
    if person(principal.name) != person(who):
        raise _fail(f"{TOKEN_VARIABLE} is {principal.name}'s token, not {who}'s", 1)
    return principal.name, principal.role


def _tasks(settings: Settings, store: Store) -> None:
    """What follows a decision (its run, its outbound event) goes where the API's would: to the
    workers, or in embedded mode into this process, on this store."""
    from agent.worker import create_app, use_services
    from connectors.actions.http import HttpActionRunner

    create_app(settings)
    if settings.embedded:
        use_services(settings, store, HttpActionRunner(settings.targets))


def _queue(settings: Settings, store: Store) -> ApprovalQueue:
    from agent import announcements
    from agent.worker import enqueue_execution

    _tasks(settings, store)
    return ApprovalQueue(
        store,
        enqueue_execution,
        timedelta(seconds=settings.approval_ttl_seconds),
        roles=settings.approver_roles(),
        on_decision=announcements.decided,
    )


@app.command()
def triage(
    input: Annotated[
        list[Path],
        typer.Option(
            "--input", "-i", help="NDJSON, JSON array or object; gzip or not; - reads stdin"
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="incidents JSONL; - writes stdout")
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="incidents shown in the summary")] = 10,
) -> None:
    """Triage alert files into ranked incidents and queue proposed actions for approval."""
    from agent.parallel_read import worker_count

    settings = _settings()
    workers = worker_count(settings.read_workers)
    files = _once_each(_existing(input))
    with tempfile.TemporaryDirectory(prefix="vigie-spool-") as spool:
        files, names = _spooled(files, Path(spool), unzip=workers > 1)
        _triage_inputs(settings, files, output, top, names, workers)


def _existing(paths: list[Path]) -> list[Path]:
    for path in paths:
        if path.is_dir():
            raise _fail(f"input is a folder, not a file: {path} (name its files: -i {path}/*)")
        if str(path) != "-" and not path.exists():
            raise _fail(f"input not found: {path}")
    return paths


def _spooled(paths: list[Path], spool: Path, unzip: bool) -> tuple[list[Path], dict[str, str]]:
    """The inputs as plain files, and the name each copy is shown by. The reader cuts a large
    file at byte offsets and reads alerts' documents back from it during the run, so standard
    input (`-`) or a pipe (`<(ssh host cat a.json)`) is copied into `spool` first; with several
    read workers, a gzip file (Wazuh's rotated days) is decompressed there, so they can share
    it. Rejections name `stdin` or the file given, not a copy gone when the run ends."""
    files: list[Path] = []
    names: dict[str, str] = {}
    for n, path in enumerate(paths):
        stdin = str(path) == "-"
        shown = "stdin" if stdin else str(path)
        file = path
        if stdin or not path.is_file():
            file = _copied(path, spool / ("stdin" if stdin else f"{n}-{path.name}"))
        plain = decompress(file, spool / f"{n}-plain") if unzip else None
        if plain is not None and file != path:
            file.unlink()  # the compressed copy: only the plain one is read
        file = plain or file
        if file != path:
            names[str(file)] = shown
        files.append(file)
    return files, names


def _copied(stream: Path, copy: Path) -> Path:
    if copy.exists():
        raise _fail(f"{stream} is given twice: a stream can be read once")
    stdin = str(stream) == "-"
    if stdin and sys.stdin.isatty():
        raise _fail("-i -: nothing is piped to standard input")
    try:
        with (
            copy.open("wb") as fh,
            nullcontext(sys.stdin.buffer) if stdin else stream.open("rb") as source,
        ):
            shutil.copyfileobj(source, fh, 1 << 20)
    except OSError as exc:
        raise _fail(
            f"cannot copy {stream} to {copy.parent} ({exc.strerror}): set TMPDIR to a folder "
            "with room"
        ) from exc
    return copy


def _triage_inputs(
    settings: Settings,
    input: list[Path],
    output: Path | None,
    top: int,
    names: dict[str, str],
    workers: int,
) -> None:
    from agent.parallel_read import ParallelRead, start_first

    to_stdout = str(output) == "-"  # the incidents to stdout, the summary to stderr
    said = err if to_stdout else out
    if output is not None and not to_stdout:
        if any(output.resolve() == path.resolve() for path in input):
            raise _fail(f"the output would overwrite an input: {output}")
        _writable(output)  # before the run: a day's triage must not end in a traceback
    _say_where_the_model_is(settings)
    store = _store(settings)
    started = datetime.now(UTC)
    paths = [str(p) for p in input]
    reading: dict[str, ParallelRead] = {}
    with err.status("triaging...") as status:
        try:
            # A large file's workers start reading now, while LangGraph takes 1-2 s to import.
            reading = start_first(paths, settings.max_doc_bytes, workers)
            from agent.service import triage_files

            state = triage_files(
                settings,
                store,
                paths,
                progress=lambda stage, n: status.update(f"{stage}: {n:,}"),
                started=reading,
                names=names,
            )
        except VigieError as exc:
            raise _fail(str(exc)) from exc
        finally:
            for read in reading.values():
                read.close()
    incidents = state.get("incidents", [])
    if output is not None:
        _write_incidents(incidents, output)
    seconds = (datetime.now(UTC) - started).total_seconds()
    known = state.get("known", {})
    _summary(
        incidents,
        state.get("proposals", []),
        state.get("dead_letters", []),
        len(state.get("alerts", [])),
        seconds,
        top,
        said,
    )
    if settings.analyst == "mistral":
        said.print(plain(_model_use(incidents, settings.llm_min_priority)), highlight=False)
    if known:  # a file triaged again: its alerts are where the earlier run put them
        said.print(
            f"[bold]{len(known):,}[/] alert(s) already in {len(set(known.values())):,} "
            "incident(s) from an earlier run: left there"
        )
    if not state.get("alerts") and not known:
        raise _fail("no valid alert in the input", code=2)


def _write_incidents(incidents: list[Incident], output: Path) -> None:
    """The output contract, a line an incident, into `output` or (`-`) stdout."""
    lines = (orjson.dumps(inc.output_line()) + b"\n" for inc in incidents)
    if str(output) == "-":
        try:
            sys.stdout.buffer.writelines(lines)
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # `| head`: the reader has what it wanted; the run is stored
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # quiet at exit
        return
    try:
        with output.open("wb") as fh:
            fh.writelines(lines)
    except OSError as exc:
        raise _fail(f"cannot write {output} ({exc.strerror}); the run is stored") from exc


def _once_each(paths: list[Path]) -> list[Path]:
    """The inputs, a file named twice (overlapping globs, a symlink) read once: its second
    reading made every alert of it a "duplicate alert id" dead letter."""
    kept: dict[object, Path] = {}
    for path in paths:
        first = kept.setdefault(object() if str(path) == "-" else path.resolve(), path)
        if first is not path:
            err.print(plain(f"{path} is {first} again: read once"), markup=False)
    return list(kept.values())


def _writable(output: Path) -> None:
    """Create the output's folder and the file if missing (an existing one is left as it is
    until the run's end), or fail with the reason."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("ab"):
            pass
    except OSError as exc:
        raise _fail(f"cannot write {output} ({exc.strerror or exc})") from exc


def _say_where_the_model_is(settings: Settings) -> None:
    """Before any incident is sent: which model, where, and whether entities are pseudonymised
    (nothing when the offline analyst writes every assessment)."""
    if settings.analyst != "mistral":
        return
    where = shown_url(settings.mistral_url) if settings.mistral_url else "Mistral's API"
    entities = "pseudonymised" if settings.pseudonymize else "NOT pseudonymised"
    line = (
        f"analyst: Mistral {settings.mistral_model} at {where}, for incidents of priority "
        f"{settings.llm_min_priority:g} or more; their entities {entities}"
    )
    err.print(plain(line), markup=False, highlight=False)


def _model_use(incidents: list[Incident], min_priority: float) -> str:
    """How many incidents the model assessed: a model out of reach, a budget spent or an answer
    citing nothing leaves the offline analyst's assessment, which says why in its notes."""
    asked = sum(i.priority >= min_priority for i in incidents)
    by_model = sum(bool(i.assessment and i.assessment.analyst == "mistral") for i in incidents)
    return (
        f"the model assessed {by_model} of the {asked} incident(s) at priority "
        f"{min_priority:g} or more; the offline analyst assessed the rest (each says why in "
        "its notes)"
    )


def _summary(
    incidents: list[Incident],
    proposals: list[ActionProposal],
    dead: list,
    alerts: int,
    seconds: float,
    top: int,
    out: Console = out,
) -> None:
    if incidents:  # an empty table says nothing the next line does not
        out.print(
            incidents_table(
                f"Top {min(top, len(incidents))} of {len(incidents)} incidents", incidents[:top]
            )
        )
    bands = Counter(
        "high (>=60)" if i.priority >= 60 else "medium (35-59)" if i.priority >= 35 else "low (<35)"
        for i in incidents
    )
    by_band = f" ({', '.join(f'{k}: {v}' for k, v in sorted(bands.items()))})" if bands else ""
    out.print(
        f"[bold]{alerts:,}[/] alerts -> [bold]{len(incidents):,}[/] incidents{by_band} "
        f"in {seconds:.2f}s"
    )
    out.print(f"[bold]{len(proposals)}[/] action proposal(s) queued for approval")
    if dead:
        reasons = Counter(d.reason.split(":")[0] for d in dead)
        out.print(f"[bold yellow]{len(dead)}[/] document(s) rejected:")
        for reason, n in reasons.most_common(10):
            out.print(plain(f"  {n} x {reason}"), markup=False, highlight=False)
        for d in dead[:5]:
            out.print(plain(f"  {d.source}:{d.line}: {d.reason}"), markup=False, highlight=False)
        if len(dead) > 5:
            out.print(f"  ... `vigie rejected --limit {len(dead)}` lists them all", markup=False)
    else:
        out.print("0 documents rejected")


def _proposal_row(p: ActionProposal) -> dict:
    d = p.model_dump(mode="json")
    d["approvals_needed"] = p.required_approvals - len(approved_by(p.approvals))
    return d


@approvals_app.command("list")
def approvals_list(
    status: Annotated[ProposalState | None, typer.Option(help="only this state")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document a line")] = False,
) -> None:
    """List proposals, highest-risk and oldest first."""
    settings = _settings()
    store = _store(settings)
    items = store.list_proposals(states=[status] if status else None)
    items.sort(key=lambda p: (-RISK_RANK[p.risk], p.created_at, p.proposal_id))
    if as_json:
        for p in items:
            sys.stdout.write(orjson.dumps(_proposal_row(p)).decode() + "\n")
        return
    table = Table(title=f"{len(items)} proposal(s)" + (f" ({status.value})" if status else ""))
    for col in (
        "proposal",
        "state",
        "risk",
        "approvals",
        "action",
        "arguments",
        "incident",
        "expires",
    ):
        table.add_column(col, overflow="fold")
    for p in items:
        got = len(approved_by(p.approvals))
        table.add_row(
            p.proposal_id,
            p.state.value,
            p.risk.value,
            f"{got}/{p.required_approvals}",
            p.action,
            text(orjson.dumps(p.args).decode()),  # entities from alerts
            p.incident_id,
            p.expires_at.strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


def _decide(fn: Callable[[], ActionProposal], as_json: bool) -> None:
    try:
        p = fn()
    except (ApprovalError, NotFound) as exc:
        raise _fail(str(exc), code=1) from exc
    if as_json:
        sys.stdout.write(orjson.dumps(_proposal_row(p)).decode() + "\n")
    else:
        out.print(
            f"{p.proposal_id}: {p.action} {escape(plain(orjson.dumps(p.args).decode()))} -> "
            f"[bold]{p.state.value}[/]",
            highlight=False,
        )


@approvals_app.command("approve")
def approvals_approve(
    proposal_id: str,
    who: Annotated[str, typer.Option("--as", help="your name, as recorded in the audit trail")],
    comment: Annotated[str, typer.Option(help="why")] = "",
    seen_hash: Annotated[str | None, typer.Option("--hash", help="args hash you reviewed")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a proposal; once approved by enough people it runs (once)."""
    settings = _settings()
    who, _ = _person(settings, who)
    store = _store(settings)
    queue = _queue(settings, store)

    def act() -> ActionProposal:
        queue.approve(proposal_id, who, seen_hash=seen_hash, comment=comment)
        return queue.get(proposal_id)

    _decide(act, as_json)


@approvals_app.command("settle")
def approvals_settle(
    proposal_id: str,
    who: Annotated[str, typer.Option("--as", help="your name, as recorded in the audit trail")],
    reason: Annotated[str, typer.Option(help="what you found on the target")],
    ran: Annotated[
        bool | None,
        typer.Option("--ran/--not-run", help="whether the target shows the action done"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Settle a run whose outcome is unknown (a worker died mid-run), from what the target
    shows: it is never run again."""
    if ran is None:
        raise _fail("say what the target shows: --ran or --not-run")
    settings = _settings()
    who, _ = _person(settings, who)
    store = _store(settings)
    queue = _queue(settings, store)
    _decide(lambda: queue.settle(proposal_id, who, ran=ran, reason=reason), as_json)


@approvals_app.command("edit")
def approvals_edit(
    proposal_id: str,
    who: Annotated[str, typer.Option("--as", help="your name, as recorded in the audit trail")],
    changes: Annotated[
        list[str],
        typer.Option("--set", help="NAME=VALUE: the entity acted on or a playbook option"),
    ],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Change a pending proposal's arguments: a new proposal replaces it, and needs fresh
    approvals from others than you."""
    settings = _settings()
    who, _ = _person(settings, who)
    store = _store(settings)
    queue = _queue(settings, store)

    def act() -> ActionProposal:
        args = queue.get(proposal_id).args
        return queue.edit_values(proposal_id, who, _values(changes, args))

    _decide(act, as_json)


def _values(changes: list[str], args: dict[str, Any]) -> dict[str, Any]:
    """`NAME=VALUE` pairs, each typed as the argument it replaces."""
    out: dict[str, Any] = {}
    for change in changes:
        name, sep, value = change.partition("=")
        if not sep or not name.strip():
            raise ApprovalError(f"{change!r} is not NAME=VALUE")
        name = name.strip()
        out[name] = typed_like(args.get(name, value), value)
    return out


@approvals_app.command("reject")
def approvals_reject(
    proposal_id: str,
    who: Annotated[str, typer.Option("--as", help="your name")],
    reason: Annotated[str, typer.Option(help="why it must not run")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Reject a proposal with a reason."""
    settings = _settings()
    who, _ = _person(settings, who)
    store = _store(settings)
    queue = _queue(settings, store)
    _decide(lambda: queue.reject(proposal_id, who, reason=reason), as_json)


@approvals_app.command("expire")
def approvals_expire() -> None:
    """Expire pending proposals past their deadline and reap executions that never reported."""
    from agent.execution import expire_pending, reap_stale

    settings = _settings()
    store = _store(settings)
    expired = expire_pending(store)
    reaped = reap_stale(store, timedelta(seconds=settings.execution_lease_seconds))
    out.print(f"{len(expired)} expired, {len(reaped)} marked outcome_unknown")


def _acted(act: Callable[[], T]) -> T:
    """A person's request about incidents or tunings: bad input exits 2, a refusal (nothing
    there, or someone acted first) 1, each with its reason."""
    try:
        return act()
    except BadInput as exc:
        raise _fail(str(exc)) from exc
    except (NotFound, Conflict, Forbidden) as exc:
        raise _fail(str(exc), code=1) from exc


@incidents_app.command("list")
def incidents_list(
    status: Annotated[str, typer.Option(help="open, closed or any", show_default=True)] = "open",
    min_priority: Annotated[float, typer.Option(min=0, max=100)] = 0,
    limit: Annotated[int, typer.Option(min=1, help="incidents shown")] = 20,
    involving: Annotated[
        str | None, typer.Option(help="only those with this host, user or address")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document a line")] = False,
) -> None:
    """Incidents in the order to read them, highest priority first, with what ranks each."""
    from agent.api import status_shown

    only = _acted(lambda: status_shown(status))
    if involving is not None and not involving.strip():
        raise _fail("--involving needs a host, user or address; it was blank")
    settings = _settings()
    store = _store(settings)
    ranked = store.list_incidents(
        limit=limit, status=only, min_priority=min_priority, involving=involving
    )
    if as_json:
        for inc in ranked:
            row = {
                **inc.output_line(),
                "status": inc.status,
                "why": [f.model_dump() for f in inc.leading_factors()],
            }
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return
    if not ranked:
        out.print(
            f"no {status} incident"
            + (f" at priority {min_priority:g} or more" if min_priority else "")
            + (f" involving {plain(involving)}" if involving else ""),
            markup=False,
        )
        return
    total = store.count_incidents(status=only, min_priority=min_priority, involving=involving)
    out.print(incidents_table(f"{len(ranked)} of {total} {status} incident(s)", ranked))


@incidents_app.command("show")
def incidents_show(
    incident_id: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="the whole record, as GET /api/incidents/ID answers")
    ] = False,
) -> None:
    """One incident: why it ranks where it does, why its alerts belong together, its timeline,
    the analyst's assessment, its closing and its proposed actions."""
    store = _store(_settings())
    record = incident_record(store, incident_id)
    if record is None:
        raise _fail(f"no such incident: {incident_id}", code=1)
    if as_json:
        sys.stdout.write(orjson.dumps(record.document()).decode() + "\n")
        return
    inc = record.incident
    out.print(Text(plain(inc.title), style="bold"))
    out.print(
        text(
            f"{inc.incident_id} · {inc.status} · {len(inc.alert_ids)} alert(s) · "
            f"{inc.first_seen:%Y-%m-%d %H:%M} to {inc.last_seen:%Y-%m-%d %H:%M} UTC · "
            f"hosts: {some(inc.hosts)} · users: {some(inc.users)}"
        )
    )
    above = store.count_incidents(status="open", min_priority=inc.priority)
    out.print(factors_table(inc, above))
    for line in belonging(inc):
        out.print(text(line))
    out.print(timeline_table(inc))
    for line in assessed(inc):
        out.print(text(line))
    if record.proposals:
        out.print(proposals_table(record.proposals))


@incidents_app.command("close")
def incidents_close(
    incident_ids: Annotated[list[str], typer.Argument(help="one incident or several")],
    who: Annotated[str, typer.Option("--as", help="your name, as recorded in the audit trail")],
    verdict: Annotated[str, typer.Option(help="true_positive, benign or false_positive")],
    reason: Annotated[str, typer.Option(help="why")],
    tune: Annotated[
        bool,
        typer.Option(
            "--tune",
            help="benign or false_positive only: its rule-host pairs stop counting as rare or "
            "new in later incidents for VIGIE_TUNING_DAYS",
        ),
    ] = False,
) -> None:
    """Close incidents with your verdict (each recorded in the audit trail). One closed
    already or unknown is reported (exit 1) and the others still close."""
    from agent import announcements
    from agent.dispositions import dispose, dispose_each, verdict_of

    settings = _settings()
    who, role = _person(settings, who)
    store = _store(settings)
    queue = _queue(settings, store)
    closings = _acted(
        lambda: dispose_each(
            incident_ids,
            lambda incident_id: dispose(
                store,
                incident_id,
                verdict_of(verdict),
                reason,
                who,
                tune=tune,
                role=role,
                tuning_for=timedelta(days=settings.tuning_days),
                queue=queue,
            ),
        )
    )
    for closing in closings.done:
        announcements.closed(closing)
        out.print(_closed_line(closing, who), highlight=False)
    for incident_id, exc in closings.refused.items():
        err.print(f"[bold red]not closed:[/] {escape(plain(f'{incident_id}: {exc}'))}")
    if closings.refused:
        raise typer.Exit(1)


def _closed_line(closing: Closing, who: str) -> str:
    inc, d = closing.incident, closing.incident.disposition
    assert d is not None
    said = [f"{inc.incident_id}: closed as [bold]{d.verdict}[/] by {escape(plain(who))}"]
    if d.tuned:
        said.append(
            f"{len(d.tuned)} rule-host pair(s) tuned until {d.tuned[0].expires_at:%Y-%m-%d}"
        )
    if closing.withdrawn:
        said.append(f"{len(closing.withdrawn)} pending proposal(s) rejected")
    if closing.left:
        said.append(f"{len(closing.left)} proposal(s) could not be rejected: decide them")
    return "; ".join(said)


@incidents_app.command("reopen")
def incidents_reopen(
    incident_id: str,
    who: Annotated[str, typer.Option("--as", help="your name, as recorded in the audit trail")],
    reason: Annotated[str, typer.Option(help="why the closing was wrong")],
) -> None:
    """Undo a closing made in error (its tunings stay until ended with `untune`)."""
    from agent import announcements
    from agent.dispositions import reopen

    settings = _settings()
    who, _ = _person(settings, who)
    store = _store(settings)
    inc = _acted(lambda: reopen(store, incident_id, reason, who))
    _tasks(settings, store)
    announcements.reopened(inc, who, reason)
    said = (escape(plain(x)) for x in (incident_id, who))
    out.print("{}: reopened by {}".format(*said), highlight=False)


@incidents_app.command("tunings")
def incidents_tunings() -> None:
    """The rule-host pairs tuned as noise, and until when."""
    settings = _settings()
    store = _store(settings)
    items = store.tunings(datetime.now(UTC))
    table = Table(title=f"{len(items)} tuned rule-host pair(s)")
    for col in ("rule", "host", "verdict", "by", "incident", "until", "reason"):
        table.add_column(col, overflow="fold")
    for t in items:
        table.add_row(
            text(t.rule_id),
            text(t.host),
            t.verdict,
            text(t.actor),
            t.incident_id,
            t.expires_at.strftime("%Y-%m-%d %H:%M"),
            text(t.reason),
        )
    out.print(table)


@incidents_app.command("untune")
def incidents_untune(
    rule_id: str,
    host: str,
    who: Annotated[str, typer.Option("--as", help="your name, as recorded in the audit trail")],
    reason: Annotated[str, typer.Option(help="why the tuning ends early")],
) -> None:
    """End a tuning before it expires: the rule on that host counts as rare and new again."""
    from agent.dispositions import revoke

    settings = _settings()
    who, role = _person(settings, who)
    store = _store(settings)
    _acted(lambda: revoke(store, rule_id, host, reason, who, role=role))
    said = (escape(plain(x)) for x in (rule_id, host, who))
    out.print("tuning of {} on {} revoked by {}".format(*said), highlight=False)


@app.command()
def sweep(
    once: Annotated[bool, typer.Option("--once", help="one sweep, then exit")] = False,
) -> None:
    """Sweep new alerts from Elasticsearch/OpenSearch (VIGIE_ES_*) into incidents."""
    import time

    from agent.service import make_backend, sweep_config, triage_context
    from agent.sweep import sweep as run_sweep

    settings = _settings()
    store = _store(settings)
    try:
        backend = make_backend(settings)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    ctx = triage_context(settings, store)
    _say_where_the_model_is(settings)
    while True:
        with err.status("sweeping...") as status:
            try:
                r = run_sweep(
                    backend,
                    store,
                    ctx,
                    sweep_config(settings),
                    progress=lambda r: status.update(
                        f"page {r.pages}: {r.alerts_read:,} alerts read, {r.alerts_new:,} new"
                    ),
                )
            except VigieError as exc:
                reason = escape(plain(str(exc)))
                err.print(
                    f"[bold red]sweep stopped:[/] {type(exc).__name__}: {reason}; "
                    "checkpoint kept after the last stored page",
                    highlight=False,
                )
                if once:
                    raise typer.Exit(1) from exc
                r = None
        if r is not None:
            listed = " (vigie rejected lists them)" if r.dead_letters else ""
            refolded = (
                f", {r.incidents_refolded} given repeats their SIEM folded in since"
                if r.incidents_refolded
                else ""
            )
            out.print(
                f"{r.pages} page(s), {r.alerts_read:,} alerts read, {r.alerts_new:,} new, "
                f"{r.incidents_touched} incident(s) written{refolded}, "
                f"{r.dead_letters} rejected{listed}; "
                f"checkpoint {plain(str(r.checkpoint))}",  # sort values from alert documents
                highlight=False,
                markup=False,
            )
        if once:
            return
        time.sleep(settings.sweep_interval)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default VIGIE_API_HOST")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="default VIGIE_API_PORT")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="API processes (more than 1 needs VIGIE_BROKER_URL: no inline triage)"
        ),
    ] = 1,
) -> None:
    """Serve webhooks, the analyst API, /healthz, /readyz and /metrics (uvicorn)."""
    import uvicorn

    from agent.api.auth import ApiTokens, WebhookAuth

    settings = _settings()
    if workers > 1 and settings.embedded:
        raise _fail("--workers > 1 needs VIGIE_BROKER_URL: embedded triage runs in one process")
    try:  # refused here, not in each API process uvicorn starts
        ApiTokens(settings.api_tokens.get_secret_value())
        WebhookAuth(
            settings.webhook_tokens.get_secret_value(), settings.webhook_secrets.get_secret_value()
        )
    except ConfigError as exc:
        raise _fail(f"invalid settings:\n  {exc}") from exc
    with _metrics_shared(workers):
        uvicorn.run(
            "agent.service:api_from_environment",
            factory=True,
            workers=workers,
            host=host or settings.api_host,
            port=port or settings.api_port,
            access_log=False,
            log_config=None,
        )


@contextmanager
def _metrics_shared(workers: int) -> Iterator[None]:
    """For several API processes, a fresh directory where each writes its Prometheus counters,
    so that a scrape answered by any sums them all (`agent.api.app.Metrics`); removed at the
    end. One set by the operator (`PROMETHEUS_MULTIPROC_DIR`) is theirs: used, kept."""
    if workers == 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    shared = tempfile.mkdtemp(prefix="vigie-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared  # inherited by the processes uvicorn starts
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(shared, ignore_errors=True)


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="worker processes")] = 2,
    queues: Annotated[
        str, typer.Option(help="actions (approved actions, expiry) and/or triage (intake, sweeps)")
    ] = "actions,triage",
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Run a Celery worker: approved actions, expiry and reaping, triage of webhooks and sweeps.
    A worker given only `actions` keeps approvals fast while others triage."""
    settings = _settings()
    if settings.embedded:
        raise _fail("VIGIE_BROKER_URL is not set: embedded mode runs tasks in-process")
    from agent.worker import ACTIONS_QUEUE, TRIAGE_QUEUE

    unknown = {q.strip() for q in queues.split(",")} - {ACTIONS_QUEUE, TRIAGE_QUEUE}
    if unknown:  # a worker on a queue nobody sends to would wait forever, saying nothing
        raise _fail(
            f"unknown queue(s) {sorted(unknown)}: use {ACTIONS_QUEUE} and/or {TRIAGE_QUEUE}"
        )
    from agent.celery_app import app as celery_app

    celery_app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--queues={queues}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def beat(loglevel: Annotated[str, typer.Option()] = "INFO") -> None:
    """Run the Celery beat scheduler (exactly one per deployment): expiry and reaping sweeps."""
    settings = _settings()
    if settings.embedded:
        raise _fail("VIGIE_BROKER_URL is not set: embedded mode has no scheduler")
    from agent.celery_app import app as celery_app

    celery_app.start(["beat", f"--loglevel={loglevel}"])


@playbooks_app.command("validate")
def playbooks_validate(directory: Annotated[Path | None, typer.Argument()] = None) -> None:
    """Load and validate every playbook in DIR (default: the configured directory)."""
    d = directory or _settings().playbooks_dir
    try:
        books = load_playbooks(d)
    except BadInput as exc:
        raise _fail(str(exc), code=1) from exc
    for b in books:
        steps = ", ".join(f"{s.action}({s.risk.value})" for s in b.steps)
        out.print(f"[green]ok[/] {escape(plain(b.name))}: {escape(plain(steps))}", highlight=False)
    out.print(f"{len(books)} playbook(s) valid in {d}")


@app.command()
def rejected(
    limit: Annotated[int, typer.Option(min=1, help="documents shown")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="newest skipped")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document a line")] = False,
) -> None:
    """Documents that became no alert, newest first, with why: those of webhooks and sweeps
    too, which have no run summary to show them."""
    total, page = _store(_settings()).recent_dead_letters(limit, offset)
    if as_json:
        for d in page:
            sys.stdout.write(d.model_dump_json() + "\n")
        return
    if not page:
        out.print(f"no rejected document{' past the first ' + str(offset) if offset else ''}")
        return
    shown = f"{offset + 1}-{offset + len(page)}"
    out.print(rejected_table(f"Rejected documents, newest first: {shown} of {total:,}", page))


@audit_app.command("show")
def audit_show(
    subject: Annotated[
        str | None, typer.Argument(help="an incident, a proposal or RULE@HOST; default: all")
    ] = None,
    after: Annotated[int, typer.Option(min=0, help="only events after this seq")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="events shown")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document a line")] = False,
) -> None:
    """What happened, in order: who triaged, proposed, approved, ran, closed or tuned what.
    Page on with --after, the last seq shown."""
    events = _store(_settings()).audit(subject, after=after, limit=limit + 1)  # one: any more?
    shown = events[:limit]
    if as_json:
        for e in shown:
            sys.stdout.write(e.model_dump_json() + "\n")
        return
    if not shown:
        out.print("no audit event" + (f" of {plain(subject)}" if subject else ""), markup=False)
        return
    out.print(audit_table(f"Audit events {shown[0].seq}-{shown[-1].seq}", shown))
    if len(events) > limit:
        out.print(f"more: --after {shown[-1].seq}", markup=False)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check the audit trail's hash chain end to end."""
    store = _store(_settings())
    ok, bad = store.verify_audit()
    n = len(store.audit())
    if not ok:
        raise _fail(f"audit chain broken at seq {bad} ({n} events)", code=1)
    out.print(f"[green]audit chain intact[/]: {n} events")


def main() -> None:
    """The `vigie` command. An error a command does not handle itself (a store that goes
    down mid-command) ends in one line saying what failed, not a traceback: exit 1 if trying
    again may work, 2 if the input or the settings must change first."""
    try:
        app()
    except VigieError as exc:
        code = 2 if isinstance(exc, BadInput | ConfigError) else 1
        hint = "; try again once it is back" if isinstance(exc, Transient) else ""
        said = str(exc).rstrip(". ") if hint else str(exc)
        raise SystemExit(_fail(f"{said}{hint}", code=code).exit_code) from exc


if __name__ == "__main__":
    main()
