"""``flask --app wsgi sessions ...``: inspect and manage chat sessions in Redis.

Each command is a thin shell over ``SessionAdmin`` (``sessions/admin.py``), which holds
the Redis knowledge. Output meant for scripts (counts, JSON) goes to stdout; progress, warnings and
log lines go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click
from flask.cli import AppGroup
from marshmallow import ValidationError

from chatbot_sessions.domain import RATINGS
from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.extensions import get_admin, get_store
from chatbot_sessions.ops.logs import send_logs_to_stderr
from chatbot_sessions.schemas import AdminStatsSchema, SessionDocumentSchema
from chatbot_sessions.sessions.admin import SessionStats


class _SessionsGroup(AppGroup):
    """An AppGroup that turns an unreachable Redis into a one-line error, not a traceback."""

    def invoke(self, ctx: click.Context):
        send_logs_to_stderr()  # stdout carries the command's output
        try:
            return super().invoke(ctx)
        except StoreUnavailable as exc:
            raise click.ClickException(f"Redis is unavailable: {exc}") from None


sessions_cli = _SessionsGroup(
    "sessions",
    help="Inspect and manage chat sessions in Redis (scans use SCAN, never KEYS).",
)


def _progress(what: str) -> Callable[[int], None]:
    """A callback printing a running count to stderr (in place on a terminal)."""
    tty = sys.stderr.isatty()
    start = "\r" if tty else ""

    def report(n: int) -> None:
        click.echo(f"{start}{what}: {n}", err=True, nl=not tty)

    return report


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _human_seconds(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@sessions_cli.command("count")
def count_command() -> None:
    """Print the number of live sessions (meta keys only)."""
    click.echo(get_admin().count(progress=_progress("sessions scanned")))


@sessions_cli.command("ttl-histogram")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def ttl_histogram_command(as_json: bool) -> None:
    """Print how long live sessions have left, in buckets (one SCAN pass)."""
    stats: SessionStats = get_admin().stats(progress=_progress("sessions scanned"))
    if as_json:
        _echo_json(
            {
                "sessions": stats.sessions,
                "persistent": stats.persistent,
                "buckets": stats.histogram,
            }
        )
        return
    for row in stats.histogram:
        label = f"<= {_human_seconds(row['le'])}" if row["le"] is not None else "longer"
        click.echo(f"{label:>10}  {row['count']}")
    click.echo(f"{'no expiry':>10}  {stats.persistent}")
    click.echo(f"{'total':>10}  {stats.sessions}")


@sessions_cli.command("stats")
def stats_command() -> None:
    """Print the operator report as JSON: the same document as GET /api/admin/stats."""
    _echo_json(AdminStatsSchema().dump(get_admin().report()))


@sessions_cli.command("memory")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def memory_command(as_json: bool) -> None:
    """Print Redis memory use (INFO memory; every node of a cluster)."""
    report = get_admin().memory()
    if report.error:
        raise click.ClickException(f"Redis refused INFO memory: {report.error}")
    if as_json:
        _echo_json(report.as_document())
        return
    for node, info in report.nodes.items():
        click.echo(f"[{node}]")
        for field, value in info.items():
            click.echo(f"  {field}: {value}")
    click.echo(f"used_memory total: {report.used_memory}")


def _export_or_fail(session_id: str) -> dict:
    document = get_admin().export(session_id)
    if document is None:
        raise click.ClickException(f"no such session: {session_id}")
    return document


@sessions_cli.command("show")
@click.argument("session_id")
def show_command(session_id: str) -> None:
    """Print a session as JSON, read-only (its TTL is not refreshed)."""
    _echo_json(_export_or_fail(session_id))


@sessions_cli.command("export")
@click.argument("session_id")
@click.option(
    "-o", "--output", type=click.File("w", encoding="utf-8"), default="-",
    help="File to write (default: stdout).",
)  # fmt: skip
def export_command(session_id: str, output) -> None:
    """Write a session as a JSON document that ``import`` restores exactly.

    The document holds the messages, createdAt, lastActivity, the message counter and the
    remaining TTL in milliseconds (null if the session has none).
    """
    json.dump(_export_or_fail(session_id), output, ensure_ascii=False, indent=2)
    output.write("\n")


@sessions_cli.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--replace", is_flag=True, help="Overwrite the session if it already exists.")
def import_command(file, replace: bool) -> None:
    """Restore a session from an ``export`` document (FILE, or - for stdin).

    Refuses to overwrite an existing session unless --replace is given. The TTL is set to
    the exported remainder (the service default if the document has none).
    """
    try:
        document = SessionDocumentSchema().load(json.load(file))
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file.name} is not JSON: {exc}") from None
    except ValidationError as exc:
        raise click.ClickException(f"{file.name} is not a session export: {exc.messages}") from None
    if not get_admin().restore(document, replace=replace):
        raise click.ClickException(
            f"session {document['sessionId']} already exists; pass --replace to overwrite it"
        )
    click.echo(f"imported {document['sessionId']} ({len(document['messages'])} messages)")


def _set_ttl(session_ids: tuple[str, ...], seconds: int | None, verb: str) -> None:
    missing = get_admin().set_ttl(session_ids, seconds)
    for session_id in missing:
        click.echo(f"no such session: {session_id}", err=True)
    click.echo(f"{verb} {len(session_ids) - len(missing)} session(s)")
    if missing:
        sys.exit(1)


@sessions_cli.command("warm")
@click.argument("session_ids", nargs=-1, required=True)
def warm_command(session_ids: tuple[str, ...]) -> None:
    """Reset the TTL of the given sessions to SESSION_TTL (every key, atomically).

    Exits 1 if any id does not exist. Also ends a ``persist``.
    """
    _set_ttl(session_ids, get_store().ttl, "warmed")


@sessions_cli.command("persist")
@click.argument("session_id")
def persist_command(session_id: str) -> None:
    """Remove the TTL of a session's keys, so it does not expire (every key, atomically).

    This suspends the service's invariant that every session key has a TTL, on purpose,
    for one session: use it to keep a session for an investigation. It lasts until the
    session is next used through the API (every access re-arms the normal TTL), or until
    ``warm``/``expire``. Sessions without a TTL show up in ``ttl-histogram`` as "no expiry".
    """
    _set_ttl((session_id,), None, "persisted")


@sessions_cli.command("expire")
@click.argument("session_id")
@click.argument("seconds", type=click.IntRange(min=1))
def expire_command(session_id: str, seconds: int) -> None:
    """Set the TTL of a session's keys to SECONDS (every key, atomically)."""
    _set_ttl((session_id,), seconds, "expire set on")


@sessions_cli.command("feedback")
@click.option("--rating", type=click.Choice(RATINGS), help="Only answers rated this way.")
@click.option(
    "-o", "--output", type=click.File("w", encoding="utf-8"), default="-",
    help="File to write (default: stdout).",
)  # fmt: skip
def feedback_command(rating: str | None, output) -> None:
    """Write every rated answer as JSON lines, read-only (SCAN, never KEYS).

    Each line: sessionId, messageId, rating, comment, question (the user message before the
    answer, null once trimmed), answer, sources, degraded, at (when it was rated). Use
    ``--rating down`` to find the questions the knowledge base answers badly.
    """
    written = 0
    for record in get_admin().rated_answers(rating, progress=_progress("rated sessions read")):
        output.write(json.dumps(record, ensure_ascii=False) + "\n")
        written += 1
    click.echo(f"exported {written} rated answer(s)", err=True)


@sessions_cli.command("purge")
@click.option("--yes", is_flag=True, help="Really delete every session.")
def purge_command(yes: bool) -> None:
    """Delete every session: only ``chat_session:`` keys, by SCAN + UNLINK in batches.

    Other keys in the database are left alone (no FLUSHDB). Requires --yes.
    """
    if not yes:
        raise click.UsageError("purge deletes every chat session; pass --yes to confirm")
    deleted = get_admin().purge(progress=_progress("keys deleted"))
    click.echo(f"deleted {deleted} key(s)")
