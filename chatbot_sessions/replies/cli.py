"""``flask kb``: what the knowledge base holds and what a query retrieves.

The commands read the generator the app registered (``extensions.get_generator``) and
reach the index through its documented ``retriever`` attribute, so they show exactly what
the running service uses.
"""

from __future__ import annotations

import click
from flask.cli import AppGroup

from chatbot_sessions.extensions import get_generator, resources
from chatbot_sessions.replies.retriever import Retriever

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
    """Show documents, chunks, skipped files and index build time."""
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
