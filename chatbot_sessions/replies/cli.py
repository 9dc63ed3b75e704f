"""``flask kb``: what the knowledge base holds, what a query retrieves, and reloading it.

``stats`` and ``search`` read the generator the app registered (``extensions.get_generator``)
and reach the index through its documented ``retriever`` attribute, so they show exactly
what the running service uses; ``stats`` adds what every live worker serves, from Redis.
``reload`` asks every worker to rebuild its index from KNOWLEDGE_DIR (``reloading.py``).
"""

from __future__ import annotations

import time
from typing import Any

import click
from flask.cli import AppGroup

from chatbot_sessions.exceptions import StoreUnavailable
from chatbot_sessions.extensions import get_generator, get_required, get_settings, resources
from chatbot_sessions.replies.reloading import stale_after
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
    if resources().knowledge_versions is None:
        return
    if get_settings().uses_embedded_store:
        click.echo("Workers:             not tracked (embedded store: no Redis configured)")
        return
    try:
        version, workers = _reload_state()
    except StoreUnavailable as exc:
        click.echo(f"Workers:             unknown (Redis is unavailable: {exc})")
        return
    click.echo(f"Reload version:      {version}")
    click.echo(f"Workers:             {len(workers)} live")
    if not workers:
        return
    rows = [("WORKER", "VERSION", "DOCUMENTS", "CHUNKS", "BUILT (UTC)", "ERROR")]
    for worker, served in workers.items():
        built = served.get("built_at")
        rows.append(
            (
                worker,
                "?" if served.get("version") is None else str(served["version"]),
                str(served.get("documents", "?")),
                str(served.get("chunks", "?")),
                "?" if built is None else iso_from_ms(int(built * 1000))[:19],
                _failure(served) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  " + "  ".join([*cells, row[-1]]))


def _failure(served: dict[str, Any]) -> str | None:
    if not served.get("error"):
        return None
    return f"version {served.get('failed_version')} failed: {served['error']}"


def _reload_state() -> tuple[int, dict[str, dict[str, Any]]]:
    """The version in Redis and every live worker's report."""
    versions = get_required(resources().knowledge_versions, "knowledge versions")
    stale = stale_after(get_settings().knowledge_poll_interval)
    return versions.current(), versions.workers(stale_after=stale)


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
            "reach; restart the server to load the changed KNOWLEDGE_DIR"
        )
    versions = get_required(resources().knowledge_versions, "knowledge versions")
    try:
        version = versions.bump()
    except StoreUnavailable as exc:
        raise click.ClickException(f"Redis is unavailable: {exc}") from None
    click.echo(f"Knowledge base version {version} requested.")
    if wait <= 0:
        click.echo("Workers rebuild within a few seconds; `flask kb stats` shows their versions.")
        return
    _wait_for(version, wait)


def _wait_for(version: int, timeout: float) -> None:
    """Return once every live worker serves ``version``; fail on a failed rebuild or timeout."""
    deadline = time.monotonic() + timeout
    behind: list[str] = []
    while True:
        try:
            _, workers = _reload_state()
        except StoreUnavailable as exc:
            raise click.ClickException(f"Redis is unavailable: {exc}") from None
        failed = [
            f"{w}: {_failure(s)}" for w, s in workers.items() if s.get("failed_version") == version
        ]
        if failed:
            raise click.ClickException("rebuild failed on " + "; ".join(failed))
        behind = [w for w, s in workers.items() if s.get("version") != version]
        if workers and not behind:
            click.echo(f"All {len(workers)} live workers serve version {version}.")
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    who = ", ".join(behind) if behind else "no worker reported"
    raise click.ClickException(f"not every worker serves version {version} after {timeout}s: {who}")


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
