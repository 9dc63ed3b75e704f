"""Extractive answers: the relevant sentences, named sources, honest when nothing matches."""

from __future__ import annotations

from chatbot_sessions.replies.extractive import NO_INFORMATION, ExtractiveGenerator
from chatbot_sessions.replies.knowledge import load_knowledge_base
from chatbot_sessions.replies.retriever import Retriever
from tests.replies.helpers import turns
from tests.support.threads import run_in_threads

GUIDE = {
    "redis.md": (
        "# Redis guide\n\n## Persistence\n\n"
        "Redis keeps data in memory. Snapshots are written to disk every few minutes. "
        "The append-only file logs every write for better durability. "
        "Replicas copy the primary over the network. Memory fragmentation grows over time.\n\n"
        "## Tuning\n\nSet maxmemory to cap memory use. Pick an eviction policy that fits.\n"
    ),
    "ops.md": (
        "# Operations\n\n## Commands\n\nUseful commands:\n\n"
        "- `count` prints the number of sessions.\n- `purge` deletes every session.\n"
    ),
    "fish.md": "# Fish\n\n## Tanks\n\nA fish tank needs a filter and clean water.\n",
    "dogs.md": "# Dogs\n\n## Walks\n\nDogs need long walks and fresh water.\n",
}


def generator(make_kb, files=GUIDE) -> ExtractiveGenerator:
    return ExtractiveGenerator(Retriever(load_knowledge_base(make_kb(files))))


def test_quotes_the_relevant_sentence_not_the_whole_section(make_kb) -> None:
    reply = generator(make_kb).generate("How does the append-only file help durability?", [])
    assert "The append-only file logs every write for better durability." in reply.text
    assert "Replicas copy the primary" not in reply.text
    assert "fragmentation" not in reply.text
    # the page is named by the sources (the widget's chips), not again in the text
    assert reply.text == "The append-only file logs every write for better durability."
    assert [(s.title, s.source) for s in reply.sources] == [
        ("Redis guide › Persistence", "redis.md")
    ]
    assert reply.sources[0].score > 0 and reply.degraded is False


def test_list_items_are_quoted_as_items(make_kb) -> None:
    reply = generator(make_kb).generate("Which command deletes every session?", [])
    assert reply.text.startswith("- `purge` deletes every session.")
    assert reply.sources[0].source == "ops.md"


def test_same_question_same_answer(make_kb) -> None:
    first = generator(make_kb).generate("how do snapshots and memory work", [])
    again = generator(make_kb).generate("how do snapshots and memory work", [])
    assert first == again
    assert "Snapshots are written to disk" in first.text


def test_history_resolves_a_follow_up(make_kb) -> None:
    gen = generator(make_kb)
    about_fish = turns(("user", "Tell me about fish"), ("assistant", "Fish swim."))
    about_dogs = turns(("user", "Tell me about dogs"), ("assistant", "Dogs bark."))
    fish = gen.generate("And what do they need?", about_fish)
    dogs = gen.generate("And what do they need?", about_dogs)
    assert "filter" in fish.text and fish.sources[0].source == "fish.md"
    assert "walks" in dogs.text and dogs.sources[0].source == "dogs.md"


def test_no_match_is_an_honest_reply(make_kb) -> None:
    reply = generator(make_kb).generate("Who won the football world cup?", [])
    assert reply.text == NO_INFORMATION
    assert "I don't have information about that" in reply.text
    assert reply.sources == () and reply.degraded is False


def test_history_does_not_make_an_unrelated_question_answerable(make_kb) -> None:
    history = turns(("user", "How does Redis persistence work?"), ("assistant", "…"))
    reply = generator(make_kb).generate("What's the weather in Paris?", history)
    assert reply.text == NO_INFORMATION


def test_empty_knowledge_base_is_an_honest_reply(make_kb) -> None:
    reply = generator(make_kb, {}).generate("How does Redis persistence work?", [])
    assert reply.text == NO_INFORMATION and reply.sources == ()


def test_answer_on_shipped_docs_is_short_and_cites(corpus_retriever) -> None:
    gen = ExtractiveGenerator(corpus_retriever)
    reply = gen.generate("How long are sessions kept?", [])
    assert "`SESSION_TTL` is how long an idle session is kept" in reply.text
    assert reply.sources[0].source == "configuration.md"
    assert "configuration.md" not in reply.text and "Source" not in reply.text
    page = "\n".join(c.text for c in corpus_retriever.chunks if c.source == "configuration.md")
    assert len(reply.text) < len(page) / 4


def test_concurrent_generate_calls_match_sequential(corpus_retriever) -> None:
    gen = ExtractiveGenerator(corpus_retriever)
    questions = [
        "How long are sessions kept?",
        "How do I put nginx in front of the app?",
        "Which file types can I put in the knowledge folder?",
        "What happens when a client sends too many requests?",
    ]
    expected = {q: gen.generate(q, []) for q in questions}
    mismatches: list[str] = []

    def work() -> None:
        for _ in range(15):
            for q in questions:
                if gen.generate(q, []) != expected[q]:
                    mismatches.append(q)

    run_in_threads(work, 6)
    assert mismatches == []


def test_answer_streams_a_sentence_at_a_time_with_sources_up_front(make_kb) -> None:
    gen = generator(make_kb)
    question = "how do snapshots and memory work"
    stream = gen.stream(question, [])
    assert [s.source for s in stream.sources] == ["redis.md"]  # before the first delta
    deltas = list(stream)
    assert deltas == [
        "Redis keeps data in memory.",
        " Snapshots are written to disk every few minutes.",
        " Memory fragmentation grows over time.",
    ]
    assert "".join(deltas) == gen.generate(question, []).text
    assert stream.degraded is False


def test_list_items_and_passages_stream_with_their_line_breaks(make_kb) -> None:
    gen = generator(make_kb)
    items = list(gen.stream("Which command deletes or counts sessions?", []))
    assert items == [
        "Useful commands:",
        "\n- `count` prints the number of sessions.",
        "\n- `purge` deletes every session.",
    ]
    stream = gen.stream("What do fish and dogs need besides water?", [])
    two_pages = list(stream)
    assert len(stream.sources) == 2
    assert [d.startswith("\n\n") for d in two_pages] == [False, True]
    assert "".join(two_pages) == gen.generate("What do fish and dogs need besides water?", []).text


def test_refusal_streams_sentence_by_sentence(make_kb) -> None:
    stream = generator(make_kb).stream("Who won the football world cup?", [])
    deltas = list(stream)
    assert len(deltas) == 2 and "".join(deltas) == NO_INFORMATION
    assert stream.sources == () and stream.degraded is False


def test_close_ends_the_stream_and_can_be_repeated(make_kb) -> None:
    stream = generator(make_kb).stream("how do snapshots and memory work", [])
    deltas = iter(stream)
    first = next(deltas)
    stream.close()
    stream.close()
    assert list(deltas) == []
    assert first == "Redis keeps data in memory."


def test_an_ask_finds_its_section_and_is_never_quoted(make_kb) -> None:
    ask = "<!-- ask: how do I survive a crash? -->\n"
    text = "# Backups\n\n## Snapshots\n{}\nRun the export command nightly and store it elsewhere.\n"
    question = "surviving a crash"
    reply = generator(make_kb, {**GUIDE, "backup.md": text.format(ask)}).generate(question, [])
    assert reply.sources[0].source == "backup.md"
    assert reply.text == "Run the export command nightly and store it elsewhere."
    # the same section without its ask: none of the question's words are in the guide
    without = generator(make_kb, {**GUIDE, "backup.md": text.format("")}).generate(question, [])
    assert without.text == NO_INFORMATION
