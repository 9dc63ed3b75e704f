"""``flask kb``: what the knowledge base holds, what a query retrieves, and reloading it.

``stats`` and ``search`` read the generator the app registered (``extensions.get_generator``)
and reach the index through its documented ``retriever`` attribute, so they show exactly
what the running service uses; ``stats`` adds what every live worker serves, from Redis.
``reload`` asks every worker to rebuild its index from KNOWLEDGE_DIR (``reloading.py``).
Both go through ``reload_control.ReloadControl``, as the admin API's ``/api/admin/kb`` does.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from chatbot_sessions.exceptions import (
    KnowledgeReloadFailed,
    KnowledgeReloadTimedOut,
    StoreUnavailable,
)
from chatbot_sessions.extensions import (
    get_generator,
    get_reload_control,
    get_settings,
    resources,
)
from chatbot_sessions.replies.retriever import Retriever
from chatbot_sessions.timestamps import iso_from_ms

kb_cli = AppGroup("kb", help="Inspect the knowledge base the replies are drawn from.")


def _retriever() -> Retriever:
    generator = resources().generator
    if generator is None:
        raise click.ClickException("no reply generator is registered in this application")
    retriever = getattr(generator, "retriever", None)
    if not isinstance(retriever, Retriever):
        raise click.ClickException(
            f"the reply generator ({type(generator).__name__}) has no knowledge base"
        )
    return retriever


def _mode() -> str:
    generator = get_generator()
    client = getattr(generator, "client", None)
    if client is None:
        return "extractive (no LLM)"
    return f"LLM {client.model} at {client.url}, extractive fallback"


@kb_cli.command("stats")
def stats_command() -> None:
    """Show documents, chunks, skipped files, index build time, and each worker's version."""
    stats = _retriever().stats
    click.echo(f"Knowledge directory: {stats.directory}")
    click.echo(f"Documents:           {stats.documents}")
    click.echo(f"Chunks:              {stats.chunks}")
    click.echo(f"Asks:                {stats.asks}")
    click.echo(f"Files skipped:       {stats.files_skipped}")
    for skipped in stats.skipped:
        click.echo(f"  - {skipped.path}: {skipped.reason}")
    click.echo(f"JSONL lines skipped: {stats.skipped_lines}")
    click.echo(f"Load time:           {stats.load_seconds * 1000:.1f} ms")
    click.echo(f"Index build time:    {stats.index_seconds * 1000:.1f} ms")
    click.echo(f"Retrieval:           {stats.retrieval}")
    if stats.dense is not None:
        source = "read from cache" if stats.dense.cache_hit else "embedded"
        click.echo(f"Dense index:         {source} in {stats.dense.seconds * 1000:.1f} ms")
        click.echo(f"  model:             {stats.dense.model}")
        click.echo(f"  cache file:        {stats.dense.cache_file or '(none)'}")
    click.echo(f"Replies:             {_mode()}")
    _echo_workers()


def _echo_workers() -> None:
    """The version each live worker serves, as the workers report it into Redis."""
    control = resources().reload_control
    if control is None:
        return
    if get_settings().uses_embedded_store:
        click.echo("Workers:             not tracked (embedded store: no Redis configured)")
        return
    try:
        state = control.state()
    except StoreUnavailable as exc:
        click.echo(f"Workers:             unknown (Redis is unavailable: {exc})")
        return
    click.echo(f"Reload version:      {state.version}")
    click.echo(f"Workers:             {len(state.workers)} live")
    if not state.workers:
        return
    rows = [("WORKER", "VERSION", "DOCUMENTS", "CHUNKS", "BUILT (UTC)", "ERROR")]
    for served in state.workers:
        built = served.built_at
        rows.append(
            (
                served.worker,
                _or_unknown(served.version),
                _or_unknown(served.documents),
                _or_unknown(served.chunks),
                "?" if built is None else iso_from_ms(int(built * 1000))[:19],
                served.failure or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  " + "  ".join([*cells, row[-1]]))


def _or_unknown(value: int | None) -> str:
    return "?" if value is None else str(value)


@kb_cli.command("reload")
@click.option(
    "--wait",
    "wait",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait until every live worker serves the new version (0: do not wait).",
)
def reload_command(wait: float) -> None:
    """Make every worker rebuild its index from KNOWLEDGE_DIR and serve the new one."""
    if get_settings().uses_embedded_store:
        raise click.ClickException(
            "no Redis is configured (REDIS_URL, REDIS_HOST, REDIS_SENTINELS or REDIS_CLUSTER): "
            "the embedded store lives inside the server process, which this command cannot "
            "reach; restart the server to load the changed KNOWLEDGE_DIR, or ask the server "
            "itself (POST /api/admin/kb/reload, with ADMIN_TOKEN set)"
        )
    control = get_reload_control()
    try:
        version = control.request()
        click.echo(f"Knowledge base version {version} requested.")
        if wait <= 0:
            click.echo(
                "Workers rebuild within a few seconds; `flask kb stats` shows their versions."
            )
            return
        state = control.wait_for(version, wait)
    except StoreUnavailable as exc:
        raise click.ClickException(f"Redis is unavailable: {exc}") from None
    except (KnowledgeReloadFailed, KnowledgeReloadTimedOut) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"All {len(state.workers)} live workers serve version {version}.")


@kb_cli.command("search")
@click.argument("query")
@click.option("--top", "top", default=5, show_default=True, type=click.IntRange(min=1))
def search_command(query: str, top: int) -> None:
    """Show the chunks QUERY retrieves, best first, with their scores (BM25 or hybrid)."""
    results = _retriever().search(query, top_k=top)
    if not results:
        click.echo("No chunk matches this query.")
        return
    for rank, passage in enumerate(results, start=1):
        chunk = passage.chunk
        snippet = " ".join(chunk.text.split())
        if len(snippet) > 160:
            snippet = snippet[:157] + "..."
        click.echo(f"{rank}. [{passage.score:.3f}] {chunk.title} ({chunk.source})")
        click.echo(f"   {snippet}")
