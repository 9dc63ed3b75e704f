"""Parsers for the knowledge file formats: Markdown, plain text, HTML, JSONL articles.

Each reader turns decoded text into documents made of sections, so headings survive
into chunk titles and citations. Readers raise ``ValueError`` for content they cannot
use; deciding to skip and warn is the loader's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from html.parser import HTMLParser
from typing import ClassVar

from chatbot_sessions.replies.documents import Document, Section

_ATX_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
#: A question the section answers, hidden from rendered Markdown: ``<!-- ask: ... -->``.
_ASK = re.compile(r"^\s*<!--\s*ask:\s*(.*?)\s*-->\s*$", re.IGNORECASE)


def distinct_asks(asks: Iterable[str]) -> tuple[str, ...]:
    """A section's asks as every reader gives them: trimmed, empty ones dropped, each once."""
    return tuple(dict.fromkeys(a.strip() for a in asks if a.strip()))


def title_from_name(name: str) -> str:
    """A readable title from a file name: ``redis-down.md`` -> ``Redis down``."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    words = re.sub(r"[_\-]+", " ", stem).strip()
    return words[:1].upper() + words[1:] if words else name


def read_markdown(text: str, source: str) -> list[Document]:
    """Split Markdown at ATX headings (``#`` .. ``######``), ignoring ``#`` in code fences.

    A subsection's heading keeps its parents' (``Sending a message › The response``):
    "The response" alone says little to a reader of a citation, or to BM25. A line
    ``<!-- ask: question -->`` outside code fences is one of the section's ``asks``,
    not part of its text.
    """
    title = ""
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []  # (level, text) of the headings above the text
    lines: list[str] = []
    asks: list[str] = []
    in_fence = False

    def flush() -> None:
        body = "\n".join(lines).strip()
        if body:
            heading = " › ".join(h for level, h in trail if level > 1) or (
                trail[-1][1] if trail else ""
            )
            sections.append(Section(heading, body, distinct_asks(asks)))
        lines.clear()
        asks.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and (ask := _ASK.match(line)):
            asks.append(ask.group(1))
            continue
        match = None if in_fence else _ATX_HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        flush()
        level, heading = len(match.group(1)), match.group(2).strip()
        while trail and trail[-1][0] >= level:
            trail.pop()
        trail.append((level, heading))
        if level == 1 and not title:
            title = heading
    flush()
    return [Document(title or title_from_name(source), source, tuple(sections))]


def read_text(text: str, source: str) -> list[Document]:
    """A plain text file is one section; the chunker splits it at blank lines."""
    return [Document(title_from_name(source), source, (Section("", text.strip()),))]


class _HTMLText(HTMLParser):
    """Collects visible text by block, starting a section at every h1-h6; a
    ``<!-- ask: ... -->`` comment is one of its section's asks, as in Markdown."""

    _SKIP: ClassVar[frozenset[str]] = frozenset(
        {"script", "style", "noscript", "template", "svg", "head"}
    )
    _BLOCKS: ClassVar[frozenset[str]] = frozenset(
        {
            "p",
            "div",
            "li",
            "tr",
            "br",
            "pre",
            "blockquote",
            "section",
            "article",
            "table",
        }
    )
    _HEADINGS: ClassVar[frozenset[str]] = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page_title = ""
        self.h1 = ""
        self.sections: list[Section] = []
        self._heading = ""
        self._blocks: list[str] = []
        self._current: list[str] = []
        self._skip_depth = 0
        self._in_title = False
        self._in_heading = False
        self._heading_text: list[str] = []
        self._asks: list[str] = []

    def handle_comment(self, data: str) -> None:
        ask = _ASK.match(f"<!--{data}-->")
        if ask and not self._skip_depth:
            self._asks.append(ask.group(1))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self._HEADINGS:
            self._end_block()
            self._flush_section()
            self._in_heading = True
            self._heading_text = []
        elif tag in self._BLOCKS:
            self._end_block()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self._HEADINGS and self._in_heading:
            self._in_heading = False
            self._heading = " ".join("".join(self._heading_text).split())
            if tag == "h1" and not self.h1:
                self.h1 = self._heading
        elif tag in self._BLOCKS:
            self._end_block()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.page_title += data
        elif self._skip_depth:
            return
        elif self._in_heading:
            self._heading_text.append(data)
        else:
            self._current.append(data)

    def _end_block(self) -> None:
        block = " ".join("".join(self._current).split())
        if block:
            self._blocks.append(block)
        self._current = []

    def _flush_section(self) -> None:
        if self._blocks:
            asks = distinct_asks(self._asks)
            self.sections.append(Section(self._heading, "\n\n".join(self._blocks), asks))
        self._blocks = []
        self._asks = []

    def finish(self) -> None:
        """Flush whatever text is still open at the end of the document."""
        self.close()
        self._end_block()
        self._flush_section()


def read_html(text: str, source: str) -> list[Document]:
    """Visible text of an HTML page, sectioned at headings; scripts and styles dropped."""
    parser = _HTMLText()
    parser.feed(text)
    parser.finish()
    title = " ".join(parser.page_title.split()) or parser.h1 or title_from_name(source)
    return [Document(title, source, tuple(parser.sections))]


def read_jsonl_records(text: str, source: str) -> Iterator[tuple[int, Document | str]]:
    """Yield ``(line number, document)`` per good record, ``(line number, reason)`` per bad one.

    Bad lines are reported rather than raised so one broken record does not cost the
    rest of the file.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON ({exc.msg})"
            continue
        if not isinstance(record, dict):
            yield number, "not a JSON object"
            continue
        title, body = record.get("title"), record.get("text")
        if not isinstance(title, str) or not title.strip():
            yield number, "missing or empty 'title'"
            continue
        if not isinstance(body, str) or not body.strip():
            yield number, "missing or empty 'text'"
            continue
        url = record.get("url")
        published = record.get("published")
        asks = record.get("asks", [])
        if not isinstance(asks, list) or not all(isinstance(a, str) for a in asks):
            yield number, "'asks' must be a list of strings"
            continue
        yield (
            number,
            Document(
                title=title.strip(),
                source=url if isinstance(url, str) and url.strip() else f"{source}:{number}",
                sections=(Section("", body.strip(), distinct_asks(asks)),),
                published=str(published) if published is not None else None,
            ),
        )


Reader = Callable[[str, str], list[Document]]

#: Readers for whole-file formats, by lower-case suffix. JSONL is handled by the loader
#: because its errors are per line.
READERS: dict[str, Reader] = {
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".txt": read_text,
    ".html": read_html,
    ".htm": read_html,
}
