"""Answers quoted from the knowledge base: the default, offline reply writer.

Rather than dumping the best passage, the answer is the few sentences (or list items,
or a code block) that share the most informative words with the question, quoted in
their original order. The pages they came from are the reply's sources, which the
widget shows as chips beside the text, so the text does not name them again. Being
pure selection, it is deterministic and cannot state anything the documents do not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from chatbot_sessions.domain import Message, Reply
from chatbot_sessions.replies.base import TextStream, collect
from chatbot_sessions.replies.chunking import paragraphs, sentences
from chatbot_sessions.replies.retriever import HISTORY_MESSAGES, Passage, Query, Retriever
from chatbot_sessions.replies.tokens import terms

NO_INFORMATION = (
    "I don't have information about that in my knowledge base. "
    "Try asking in other words, or about another topic."
)

_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


class _Unit(NamedTuple):
    """A quotable piece of a passage: a sentence, a list item or a code block.

    A named tuple, not a frozen dataclass: a request makes a few, and a frozen dataclass
    costs a call of ``object.__setattr__`` per field to build.
    """

    passage: int
    position: int
    text: str
    kind: str  # "prose", "item" or "code"
    terms: frozenset[str] = frozenset()


def _units(passage_index: int, text: str) -> list[_Unit]:
    """The quotable units of a passage, with their index terms."""
    return [
        _Unit(passage_index, position, unit_text, kind, unit_terms)
        for position, (unit_text, kind, unit_terms) in enumerate(_analyse(text))
    ]


@lru_cache(maxsize=8192)
def _analyse(text: str) -> tuple[tuple[str, str, frozenset[str]], ...]:
    """Split and stem a passage once: passages never change, and tokenising every sentence
    of the best passages on every request was a third of send-message's CPU time."""
    return tuple((unit.text, unit.kind, frozenset(terms(unit.text))) for unit in _split(text))


def _split(text: str) -> list[_Unit]:
    units: list[_Unit] = []
    passage_index = 0
    for block in paragraphs(text):
        if block.lstrip().startswith(("```", "~~~")):
            units.append(_Unit(passage_index, len(units), block, "code"))
            continue
        lines = block.splitlines()
        if any(_LIST_ITEM.match(line) for line in lines):
            # Markdown list: one unit per item, continuation lines joined to their item.
            items: list[str] = []
            for line in lines:
                if _LIST_ITEM.match(line) or not items:
                    items.append(_LIST_ITEM.sub("", line).strip())
                else:
                    items[-1] += " " + line.strip()
            units.extend(
                _Unit(passage_index, len(units) + i, t, "item") for i, t in enumerate(items)
            )
            continue
        for sentence in sentences(" ".join(block.split())):
            units.append(_Unit(passage_index, len(units), sentence, "prose"))
    return units


class ExtractiveAnswerer:
    """Builds an extractive reply from passages already retrieved for a query."""

    def __init__(
        self,
        retriever: Retriever,
        *,
        max_passages: int = 3,
        max_units: int = 4,
        max_chars: int = 900,
        relative_cutoff: float = 0.5,
    ) -> None:
        self.retriever = retriever
        self.max_passages = max_passages
        self.max_units = max_units
        self.max_chars = max_chars
        # Passages, and sentences, scoring under this share of the best one are
        # about something else and would only pad the answer.
        self.relative_cutoff = relative_cutoff

    def answer(self, query: Query, passages: Sequence[Passage]) -> Reply:
        """The reply quoting ``passages`` (best first); the honest refusal when there are none."""
        return collect(self.stream(query, passages))

    def stream(self, query: Query, passages: Sequence[Passage]) -> TextStream:
        """``answer`` one quoted sentence, list item or code block at a time."""
        if not passages:
            return TextStream(_prose_deltas(sentences(NO_INFORMATION)))
        best = passages[0].score
        used = [p for p in passages[: self.max_passages] if p.score >= best * self.relative_cutoff]

        # A unit's match: the weight times the idf of each query term it contains, summed in
        # query order. Units are scored as the analysed tuples; only those quoted become _Units.
        idfs = self.retriever.idfs
        weighted = [(t, w * idfs.get(t, 0.0)) for t, w in query.weights.items()]
        own = query.question_terms
        # (minus score, passage, position, text, kind): sorted as they are, best first, ties
        # in passage order; (passage, position) is unique, so text is never compared.
        candidates: list[tuple[float, int, int, str, str]] = []
        for index, passage in enumerate(used):
            # A sentence is as good as its own match times its passage's relevance.
            passage_weight = 0.5 + 0.5 * passage.score / best
            for position, (text, kind, found) in enumerate(_analyse(passage.chunk.text)):
                if own and found.isdisjoint(own):
                    continue  # earlier turns pick the passage; the unit must address the question
                match = 0.0
                for term, value in weighted:  # a loop, not sum(): no generator per unit
                    if term in found:
                        match += value
                score = match * passage_weight
                if score > 0:
                    candidates.append((-score, index, position, text, kind))
        candidates.sort()
        if candidates:
            floor = -candidates[0][0] * self.relative_cutoff
            candidates = [c for c in candidates if -c[0] >= floor]

        chosen: list[_Unit] = []
        size = 0
        for _, index, position, text, kind in candidates:
            if len(chosen) == self.max_units:
                break
            if chosen and size + len(text) > self.max_chars:
                continue
            chosen.append(_Unit(index, position, text, kind))
            size += len(text)
        if not chosen:
            # The passage matched through its heading only: quote its opening instead.
            chosen = _units(0, used[0].chunk.text)[:2]

        chosen.sort()  # by passage, then position: the order they are quoted in
        quoted = [used[i] for i in sorted({u.passage for u in chosen})]
        return TextStream(_deltas(chosen), tuple(p.as_source() for p in quoted))


def _deltas(units: Sequence[_Unit]) -> list[str]:
    """The answer as deltas, one per unit, each led by what separates it from the one before.

    Sentences of one passage run on in a paragraph, list items and code blocks take a line
    of their own, passages are a blank line apart; ``"".join`` gives the whole answer.
    """
    deltas: list[str] = []
    previous: _Unit | None = None
    for unit in units:
        text = f"- {unit.text}" if unit.kind == "item" else unit.text
        if previous is None:
            separator = ""
        elif unit.passage != previous.passage:
            separator = "\n\n"
        elif unit.kind == previous.kind == "prose":
            separator = " "
        else:
            separator = "\n"
        deltas.append(separator + text)
        previous = unit
    return deltas


def _prose_deltas(texts: Sequence[str]) -> list[str]:
    """Sentences of one paragraph as deltas: the first as it is, the others led by a space."""
    return [text if i == 0 else f" {text}" for i, text in enumerate(texts)]


class ExtractiveGenerator:
    """The default ``StreamingReplyGenerator``: retrieval plus extraction, no network needed.

    ``retriever`` is public so tools such as ``flask kb`` can reach the index.
    """

    #: It reads no further back than the query does; the chat service reads no more.
    history_messages = HISTORY_MESSAGES

    def __init__(self, retriever: Retriever, *, top_k: int = 5) -> None:
        self.retriever = retriever
        self.top_k = top_k
        self.answerer = ExtractiveAnswerer(retriever)

    def generate(self, question: str, history: Sequence[Message]) -> Reply:
        """Answer ``question`` by quoting the knowledge base, using ``history`` for context."""
        return collect(self.stream(question, history))

    def stream(self, question: str, history: Sequence[Message]) -> TextStream:
        """``generate``'s answer a sentence (or list item, or code block) at a time."""
        query = Query.for_conversation(question, history)
        return self.answerer.stream(query, self.retriever.search_query(query, self.top_k))
