"""Loading a knowledge folder: what is read, what is skipped, and that skips are logged."""

from __future__ import annotations

import logging
import os

import pytest

from chatbot_sessions.replies.knowledge import (
    KnowledgeDirError,
    load_knowledge_base,
    shipped_corpus_dir,
)


def test_reads_every_supported_format_recursively(make_kb) -> None:
    root = make_kb(
        {
            "a.md": "# Alpha\n\nAlpha text.",
            "sub/b.txt": "Beta text.",
            "sub/deeper/c.html": "<h1>Gamma</h1><p>Gamma text.</p>",
            "d.jsonl": '{"title": "Delta", "text": "Delta text."}\n'
            '{"title": "Epsilon", "text": "Epsilon text."}\n',
            "ignored.pdf": b"%PDF-1.4",
            ".hidden.md": "# Hidden\n\nsecret",
        }
    )
    kb = load_knowledge_base(root)
    assert kb.documents == 5
    assert sorted(c.source for c in kb.chunks) == [
        "a.md",
        "d.jsonl:1",
        "d.jsonl:2",
        "sub/b.txt",
        "sub/deeper/c.html",
    ]
    assert kb.skipped == []


def test_bad_files_are_skipped_with_a_warning_naming_them(make_kb, caplog) -> None:
    root = make_kb(
        {
            "good.md": "# Good\n\nUseful text.",
            "binary.md": b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR",
            "latin1.txt": "caf\xe9".encode("latin-1"),
            "empty.txt": "   \n\n",
            "headings-only.md": "# Title\n\n## Nothing here\n",
            "all-bad.jsonl": "not json\n{}\n",
            "mixed.jsonl": '{"title": "Ok", "text": "fine"}\n{"title": "Cut", "te\n',
        }
    )
    os.symlink(root / "missing-target.md", root / "dangling.md")
    with caplog.at_level(logging.WARNING, logger="chatbot_sessions.replies.knowledge"):
        kb = load_knowledge_base(root)

    reasons = {s.path: s.reason for s in kb.skipped}
    assert set(reasons) == {
        "binary.md",
        "latin1.txt",
        "empty.txt",
        "headings-only.md",
        "all-bad.jsonl",
        "dangling.md",
    }
    assert reasons["binary.md"] == "binary file"
    assert reasons["latin1.txt"].startswith("not UTF-8")
    assert reasons["empty.txt"] == "empty file"
    assert reasons["dangling.md"].startswith("unreadable")
    assert sorted(c.source for c in kb.chunks) == ["good.md", "mixed.jsonl:1"]
    assert kb.skipped_lines == 3

    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in reasons:
        assert any(f"skipped {name}:" in m for m in messages), name
    assert any("mixed.jsonl line 2" in m for m in messages)
    assert any("all-bad.jsonl line 1" in m for m in messages)


def test_empty_folder_loads_and_warns(make_kb, caplog) -> None:
    root = make_kb({})
    with caplog.at_level(logging.WARNING):
        kb = load_knowledge_base(root)
    assert kb.chunks == [] and kb.documents == 0
    assert any("is empty" in r.getMessage() for r in caplog.records)


def test_missing_folder_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(KnowledgeDirError, match="KNOWLEDGE_DIR"):
        load_knowledge_base(tmp_path / "nope")


def test_shipped_corpus_loads_cleanly() -> None:
    kb = load_knowledge_base(shipped_corpus_dir())
    assert kb.skipped == []
    assert kb.documents >= 8
    assert len({c.source for c in kb.chunks}) == kb.documents
    assert len(kb.chunks) >= 60
