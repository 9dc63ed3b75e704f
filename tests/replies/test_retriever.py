"""Retriever mechanics on small, hand-made knowledge bases."""

from __future__ import annotations

from chatbot_sessions.replies.knowledge import load_knowledge_base
from chatbot_sessions.replies.retriever import Query, Retriever, previous_user_turns
from tests.replies.helpers import turns
from tests.support.threads import run_in_threads

PETS = {
    "cats.md": "# Cats\n\nCats purr.\n\n## Food\n\nCats eat fish and chicken.\n",
    "dogs.md": "# Dogs\n\nDogs bark.\n\n## Walks\n\nDogs need long walks in the park.\n",
    "fish.md": "# Fish\n\n## Tanks\n\nA tank needs a filter and clean water.\n",
}


def test_ranks_the_matching_section_first_with_scores(make_kb) -> None:
    retriever = Retriever(load_knowledge_base(make_kb(PETS)))
    results = retriever.search("What do cats eat?", top_k=5)
    assert results[0].chunk.title == "Cats › Food"
    assert results[0].chunk.source == "cats.md"
    assert [p.score for p in results] == sorted((p.score for p in results), reverse=True)
    # only chunks sharing a term are returned: nothing about dogs
    assert all(p.chunk.source == "cats.md" for p in results)


def test_no_shared_term_means_no_result(make_kb) -> None:
    retriever = Retriever(load_knowledge_base(make_kb(PETS)))
    assert retriever.search("quantum chromodynamics") == []
    assert retriever.search("what is the") == []
    assert retriever.search("cats", top_k=0) == []


def test_top_k_limits_results_and_ties_break_by_corpus_order(make_kb) -> None:
    same = {f"{i:02d}.md": "# T\n\nredis redis\n" for i in range(10)}
    retriever = Retriever(load_knowledge_base(make_kb(same)))
    results = retriever.search("redis", top_k=4)
    assert [p.chunk.source for p in results] == ["00.md", "01.md", "02.md", "03.md"]


def test_context_turns_resolve_a_follow_up(make_kb) -> None:
    retriever = Retriever(load_knowledge_base(make_kb(PETS)))
    # "what do they need" alone is ambiguous between dogs (walks) and fish (tank)
    assert (
        retriever.search("And what do they need?", context=["Tell me about fish"])[0].chunk.source
        == "fish.md"
    )
    assert (
        retriever.search("And what do they need?", context=["Tell me about dogs"])[0].chunk.source
        == "dogs.md"
    )


def test_question_outweighs_context() -> None:
    query = Query.build("filter", context=["filter dogs", "cats"])
    weights = dict(query.weights)
    assert weights.pop("filter") == 1.0
    assert weights["dog"] > weights["cat"] > 0
    assert max(weights.values()) < 1.0


def test_previous_user_turns_newest_first_and_skips_assistant() -> None:
    history = turns(("user", "first"), ("assistant", "a1"), ("user", "second"), ("assistant", "a2"))
    assert previous_user_turns(history) == ["second", "first"]
    assert previous_user_turns(history, limit=1) == ["second"]
    assert previous_user_turns([]) == []


def test_empty_knowledge_base_searches_to_nothing(make_kb) -> None:
    retriever = Retriever(load_knowledge_base(make_kb({})))
    assert retriever.search("anything") == []
    assert retriever.stats.chunks == 0 and retriever.stats.documents == 0


def test_stats_describe_the_index(make_kb) -> None:
    kb_dir = make_kb({**PETS, "junk.txt": b"\x00\x01"})
    stats = Retriever(load_knowledge_base(kb_dir)).stats
    assert (stats.documents, stats.chunks, stats.files_skipped) == (3, 5, 1)
    assert stats.skipped[0].path == "junk.txt"
    assert stats.index_seconds > 0 and stats.directory == str(kb_dir)


def test_concurrent_searches_agree_with_sequential(corpus_retriever) -> None:
    questions = ["redis url", "gunicorn workers", "rate limit", "session ttl", "cors"]
    expected = {q: corpus_retriever.search(q, 3) for q in questions}
    failures: list[str] = []

    def work() -> None:
        for _ in range(30):
            for q in questions:
                if corpus_retriever.search(q, 3) != expected[q]:
                    failures.append(q)

    run_in_threads(work, 6)
    assert failures == []


def test_context_only_reranks_chunks_that_match_the_question(make_kb) -> None:
    retriever = Retriever(load_knowledge_base(make_kb(PETS)))
    results = retriever.search("what about water?", top_k=5, context=["cats food"])
    # cats chunks match the context strongly but never mention water
    assert [p.chunk.source for p in results] == ["fish.md"]


def test_question_of_unknown_words_gets_nothing_despite_context(make_kb) -> None:
    retriever = Retriever(load_knowledge_base(make_kb(PETS)))
    assert retriever.search("thanks!", context=["What do cats eat?"]) == []
    # while a follow-up with no content words of its own leans on the context
    assert retriever.search("and them?", context=["cats food"])[0].chunk.source == "cats.md"


def test_a_question_already_stored_is_not_its_own_context() -> None:
    history = turns(("user", "cats food"), ("assistant", "…"), ("user", "dogs walks"))
    stored_first = Query.for_conversation("dogs walks", history)
    assert stored_first == Query.build("dogs walks", ["cats food"])


def test_results_cite_each_page_once_by_its_best_chunk(make_kb) -> None:
    # One page matches in many sections, others once and more weakly: a source list of
    # five would otherwise be the big page five times.
    big = "# Redis\n\n" + "".join(f"## Part {i}\n\nredis redis keys {i}\n\n" for i in range(30))
    small = {
        f"{i:02d}.md": f"# Note {i}\n\nredis, once, among other words {i}.\n" for i in range(3)
    }
    retriever = Retriever(load_knowledge_base(make_kb({"big.md": big, **small})))
    results = retriever.search("redis keys", top_k=4)
    sources = [p.chunk.source for p in results]
    assert sources == ["big.md", "00.md", "01.md", "02.md"]  # 30 chunks of big.md, cited once
    assert [p.score for p in results] == sorted((p.score for p in results), reverse=True)
    # big.md's 30 chunks outscore every other: the first 16 candidates (4 x PAGE_SHORTLIST)
    # hold one page, so the rest of the candidates is searched for the other three.
