"""Format readers: headings become sections, markup and junk do not reach the index."""

from __future__ import annotations

from chatbot_sessions.replies.documents import Document
from chatbot_sessions.replies.readers import (
    read_html,
    read_jsonl_records,
    read_markdown,
    read_text,
    title_from_name,
)


def test_markdown_sections_follow_headings_and_ignore_hashes_in_code() -> None:
    text = (
        "# Guide\n\nIntro text.\n\n## Install\n\nRun it.\n\n"
        "```bash\n# not a heading\npip x\n```\n\n"
        "### Deep\n\nDeep text.\n\n## Empty\n\n## Last\nEnd.\n"
    )
    [doc] = read_markdown(text, "guide.md")
    assert doc.title == "Guide"
    assert [s.heading for s in doc.sections] == [
        "Guide",
        "Install",
        "Install › Deep",
        "Last",
    ]
    assert "# not a heading" in doc.sections[1].text


def test_markdown_ask_lines_become_the_sections_asks_not_its_text() -> None:
    text = (
        "# Guide\n\n## Install\n<!-- ask: how do I set it up? -->\n"
        "<!--ASK:   how do I set it up?   -->\n<!-- ask: -->\n\nRun it.\n"
        "<!-- a plain comment -->\n"
        "```html\n<!-- ask: inside a fence -->\n```\n\n## Last\nEnd.\n"
    )
    [doc] = read_markdown(text, "guide.md")
    install, last = doc.sections
    assert install.asks == ("how do I set it up?",)  # duplicates once, empty ones dropped
    assert "ask:" not in install.text.replace("<!-- ask: inside a fence -->", "")
    assert "<!-- ask: inside a fence -->" in install.text  # code stays code
    assert "<!-- a plain comment -->" in install.text
    assert last.asks == ()


def test_markdown_without_h1_takes_title_from_file_name() -> None:
    [doc] = read_markdown("## Only\n\ntext\n", "ops/redis-down_notes.md")
    assert doc.title == "Redis down notes"
    assert title_from_name("a.txt") == "A"


def test_text_file_is_one_section() -> None:
    [doc] = read_text("\n first\n\nsecond \n", "notes.txt")
    assert doc.title == "Notes"
    assert doc.sections[0].text == "first\n\nsecond"


def test_html_keeps_visible_text_by_heading_and_drops_scripts() -> None:
    html = (
        "<html><head><title>  Page  Title </title><style>p{}</style></head><body>"
        "<script>var secret = 1;</script><p>Lead &amp; intro.</p>"
        "<h2>Part <em>one</em></h2><p>First</p><ul><li>item a</li><li>item b</li></ul>"
        "</body></html>"
    )
    [doc] = read_html(html, "p.html")
    assert doc.title == "Page Title"
    assert [s.heading for s in doc.sections] == ["", "Part one"]
    assert doc.sections[0].text == "Lead & intro."
    assert doc.sections[1].text == "First\n\nitem a\n\nitem b"
    assert "secret" not in " ".join(s.text for s in doc.sections)


def test_jsonl_reports_bad_lines_and_keeps_good_ones() -> None:
    lines = [
        '{"title": "A", "text": "alpha", "url": "https://x.test/a", "published": "2024-01-02"}',
        "{broken",
        '["not", "an object"]',
        '{"title": "", "text": "no title"}',
        '{"title": "B", "text": 5}',
        "",
        '{"title": "C", "text": "gamma"}',
    ]
    text = "\n".join(lines)
    out = list(read_jsonl_records(text, "news.jsonl"))
    docs = [(n, d) for n, d in out if isinstance(d, Document)]
    bad = {n: reason for n, reason in out if isinstance(reason, str)}
    assert [(n, d.title, d.source) for n, d in docs] == [
        (1, "A", "https://x.test/a"),
        (7, "C", "news.jsonl:7"),
    ]
    assert docs[0][1].published == "2024-01-02"
    assert set(bad) == {2, 3, 4, 5}
    assert "invalid JSON" in bad[2] and "title" in bad[4] and "text" in bad[5]


def test_html_ask_comments_and_jsonl_asks_are_asks_too() -> None:
    html = (
        "<h2>Install</h2><!-- ask: how do I set it up? --><p>Run it.</p><!-- note -->"
        "<script><!-- ask: hidden --></script><h2>Next</h2><p>More.</p>"
    )
    [doc] = read_html(html, "p.html")
    assert [(s.heading, s.asks) for s in doc.sections] == [
        ("Install", ("how do I set it up?",)),
        ("Next", ()),
    ]
    lines = [
        '{"title": "A", "text": "alpha", "asks": ["what is alpha?", " ", "what is alpha?"]}',
        '{"title": "B", "text": "beta", "asks": "what is beta?"}',
    ]
    [(_, good), (number, reason)] = read_jsonl_records("\n".join(lines), "kb.jsonl")
    assert good.sections[0].asks == ("what is alpha?",)
    assert number == 2 and "asks" in reason
