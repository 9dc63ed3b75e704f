"""Term extraction: what makes a question and a passage match at all."""

from __future__ import annotations

from chatbot_sessions.replies.tokens import terms, words
from tests.support.threads import run_in_threads


def test_stop_words_dropped_but_topic_words_like_down_kept() -> None:
    assert words("What is the Redis down runbook?") == ["redis", "down", "runbook"]


def test_identifiers_match_whole_and_by_parts() -> None:
    found = words("Set SESSION_TTL and use send-message")
    assert found == [
        "set",
        "session_ttl",
        "session",
        "ttl",
        "use",
        "send-message",
        "send",
        "message",
    ]
    assert set(terms("session ttl")) <= set(terms("SESSION_TTL"))


def test_stemming_makes_inflections_meet() -> None:
    assert terms("expires expired expiring") == [terms("expire")[0]] * 3
    assert terms("") == [] and terms("the of and") == []


def test_terms_is_consistent_across_threads() -> None:
    text = "Sessions expire after the configured lifetime; trimming keeps histories bounded."
    expected = terms(text)
    results: list[list[str]] = []

    def work() -> None:
        for _ in range(200):
            results.append(terms(text))

    run_in_threads(work, 6)
    assert len(results) == 1200 and all(r == expected for r in results)


def test_single_letters_from_contractions_are_dropped() -> None:
    assert words("What's up? Don't 2 x") == ["up", "don", "2"]


def test_the_shared_stem_table_keeps_only_short_words_and_stays_bounded(monkeypatch) -> None:
    import Stemmer

    from chatbot_sessions.replies import tokens

    monkeypatch.setattr(tokens, "_stems", {})
    monkeypatch.setattr(tokens, "_STEMS_KEPT", 5)
    long_word = "x" * 4000  # a client can send a question that is one long "word"
    assert terms(f"deploying {long_word}") == Stemmer.Stemmer("english").stemWords(
        ["deploying", long_word]
    )
    assert set(tokens._stems) == {"deploying"}  # the long one is stemmed, not kept
    terms("alpha beta gamma delta epsilon zeta eta theta")
    assert len(tokens._stems) <= 5 + 8  # full after one batch: nothing more is added
    before = dict(tokens._stems)
    assert terms("iota kappa") == Stemmer.Stemmer("english").stemWords(["iota", "kappa"])
    assert tokens._stems == before
