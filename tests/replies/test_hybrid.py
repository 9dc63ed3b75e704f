"""Hybrid retrieval (RETRIEVAL=hybrid): fusion, its rules, its setting, its quality."""

from __future__ import annotations

import pytest

from bench.retrieval_quality import DEFAULT_SET, load_cases, retriever_mode, run, summary_row
from chatbot_sessions import create_app
from chatbot_sessions.config import ConfigError, load_settings
from chatbot_sessions.replies import embeddings
from chatbot_sessions.replies.factory import build_retriever
from chatbot_sessions.replies.retriever import Query

PETS = {
    "cats.md": "# Cats\n\nCats purr.\n\n## Food\n\nCats eat fish and chicken.\n",
    "dogs.md": "# Dogs\n\nDogs bark.\n\n## Walks\n\nDogs need long walks in the park.\n",
    "fish.md": "# Fish\n\n## Tanks\n\nA tank needs a filter and clean water.\n",
}


@pytest.fixture
def pets(make_kb, tmp_path):
    return build_retriever(str(make_kb(PETS)), "hybrid", str(tmp_path / "emb"))


def test_hybrid_keeps_the_retriever_api(pets) -> None:
    results = pets.search("What do cats eat?", top_k=5)
    assert results[0].chunk.title == "Cats › Food"
    assert [p.score for p in results] == sorted((p.score for p in results), reverse=True)
    assert pets.stats.retrieval == "hybrid" and pets.stats.dense.cache_hit is False
    assert pets.knows("cat") and pets.idf("cat") > 0
    assert pets.scores(Query.build("cats food")).shape == (len(pets.chunks),)


def test_a_paraphrase_without_shared_words_is_found(pets) -> None:
    # "meal" and "give" never occur in the docs; the embedding still finds the food section
    assert pets.search("what meal should I give my cats", top_k=1)[0].chunk.title == "Cats › Food"
    # but a question none of whose words the docs know stays unanswered, as with BM25
    assert pets.search("my kitten's favourite meal?") == []


def test_fusion_order_mixes_both_signals(pets) -> None:
    query = Query.build("Which pet needs a walk in the park?")
    bm25 = pets.bm25_scores(query)
    cosine, _ = pets.dense_similarities(query)
    fused = pets.scores(query)
    best = int(fused.argmax())
    assert pets.chunks[best].title == "Dogs › Walks"
    assert bm25[best] == bm25.max() and cosine[best] == cosine.max()
    assert (fused[bm25 > 0] > 0).all()  # every chunk sharing a word stays a candidate


def test_unknown_words_still_get_nothing_despite_context(pets) -> None:
    assert pets.search("thanks!", context=["What do cats eat?"]) == []
    assert pets.search("weather in Paris?") == []
    assert pets.search("what is the") == []
    assert pets.search("and them?", context=["cats food"])[0].chunk.source == "cats.md"


def test_history_weights_the_dense_query_too(pets) -> None:
    with_fish = pets.search("And what do they need?", context=["Tell me about fish"])
    with_dogs = pets.search("And what do they need?", context=["Tell me about dogs"])
    assert with_fish[0].chunk.source == "fish.md" and with_dogs[0].chunk.source == "dogs.md"
    query = Query.build("what do they need?", ["Tell me about fish"])
    mixed, own = pets.dense_similarities(query)
    fish = next(i for i, c in enumerate(pets.chunks) if c.source == "fish.md")
    assert mixed[fish] > own[fish]


def test_context_only_reranks_in_hybrid_too(pets) -> None:
    results = pets.search("what about water?", top_k=5, context=["cats food"])
    assert [p.chunk.source for p in results] == ["fish.md"]


def test_retrieval_setting_is_validated() -> None:
    assert load_settings(environ={}).retrieval == "hybrid"  # the default: better answers
    assert load_settings({"RETRIEVAL": "bm25"}, environ={}).retrieval == "bm25"
    with pytest.raises(ConfigError, match="RETRIEVAL='dense'"):
        load_settings({"RETRIEVAL": "dense"}, environ={})
    with pytest.raises(ValueError, match="RETRIEVAL"):
        build_retriever(None, "tfidf")


def test_hybrid_without_the_model_stops_start_up(monkeypatch, fake_redis) -> None:
    monkeypatch.setattr(embeddings, "MODEL_PACKAGE", "no_such_model_package")
    with pytest.raises(ValueError, match=r"RETRIEVAL=hybrid.*requirements-model\.txt"):
        create_app({"RETRIEVAL": "hybrid", "RATE_LIMIT_ENABLED": "0"}, redis_client=fake_redis)
    assert build_retriever(None, "bm25").dense is None  # words only need no model


# Measured with the shipped corpus (docs/performance.md, bench/retrieval_quality.py), as it
# stands since it documents streaming, stopping, ratings and idempotency keys (2026-12-02).
# blind-v1 (110 cases; the hybrid mix was tuned on it): BM25, the default, 68 at top-1
# (61.8 %) and 97 at top-3 (88.2 %); hybrid 83 (75.5 %) and 99 (90.0 %). blind-v2 (94
# cases, written by someone who had seen no retriever output; never tuned on): BM25 57
# (60.6 %) and 78 (83.0 %); hybrid 67 (71.3 %) and 81 (86.2 %). Both were written without
# those topics, and the new sections took a few of their questions from the older pages
# (before, v1 75/98 and 87/103, v2 60/81 and 70/83). blind-v3 (125 cases, written over the
# extended corpus, 46 on the new topics, never tuned on): BM25 82 (65.6 %) and 113
# (90.4 %); hybrid 96 (76.8 %) and 115 (92.0 %); over the corpus before the new sections,
# 68/96 and 84/103. With the int8 encoder and results citing each page once (2026-12-02),
# top-1 / top-3: v1 BM25 68/100, hybrid 84/102; v2 57/81, 67/86; v3 82/115, 96/122.
# With the shipped pages' asks (430 example questions under their headings, written from the
# pages alone by someone who saw no question set, 2026-12-02): v1 87/108, 105/108; v2 72/89,
# 82/91; v3 98/122, 111/123. blind-v4 (226 cases, written before anything ran against it and
# measured only after the asks were in; never tuned on): before the asks 140/194 and 166/209,
# with them 164/210 and 193/216 (85.4 % / 95.6 %). Issue #14 asks for 90 % and 100 %: not
# reached on v4. blind-v5 (223 cases, written 2026-12-03 by someone who saw only the pages,
# their asks removed; measured once before and once after the pages gained 349 more asks,
# written from the pages alone; never tuned on, v1-v4 being the development sets from then
# on): BM25 186/214 -> 187/219, hybrid 199/219 -> 202/219 (90.6 % / 98.2 %). With those
# asks, v1 95/110 and 105/109, v2 80/91 and 85/94, v3 102/123 and 113/124, v4 180/214 and
# 195/222. The floors are the measured level minus one question, a regression guard; on
# v5, the fair set, hybrid must also keep the top-1 target (TOP1_TARGET). Its top-3
# target (100 %) is not reached: four questions miss, three of them follow-ups.
SETS = {
    "blind-v1": (DEFAULT_SET, 110, {"bm25": (94, 109), "hybrid": (104, 108)}),
    "blind-v2": (
        DEFAULT_SET.with_name("blind-v2.jsonl"),
        94,
        {"bm25": (79, 90), "hybrid": (84, 93)},
    ),
    "blind-v3": (
        DEFAULT_SET.with_name("blind-v3.jsonl"),
        125,
        {"bm25": (101, 122), "hybrid": (112, 123)},
    ),
    "blind-v4": (
        DEFAULT_SET.with_name("blind-v4.jsonl"),
        226,
        {"bm25": (179, 213), "hybrid": (194, 221)},
    ),
    "blind-v5": (
        DEFAULT_SET.with_name("blind-v5.jsonl"),
        223,
        {"bm25": (186, 218), "hybrid": (201, 218)},
    ),
}
#: Issue #14's top-1 target for the default (hybrid), asserted on the set nobody tuned for.
TOP1_TARGET = ("blind-v5", 0.90)


@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
@pytest.mark.parametrize("name", sorted(SETS))
def test_blind_set_quality_per_retrieval_mode(name, mode, hybrid_corpus_retriever) -> None:
    path, size, floors = SETS[name]
    retriever = hybrid_corpus_retriever if mode == "hybrid" else build_retriever(None, "bm25")
    cases = load_cases(path)
    outcomes = run(cases, retriever_mode(retriever))
    report = "\n".join(
        f"{o.case.id:<5} {o.top1 or '-':<20} hit@1 {'yes' if o.hit1 else 'no ':<4}"
        f"hit@3 {'yes' if o.hit3 else 'no'}  want {','.join(sorted(o.case.pages))}"
        for o in outcomes
    )
    report += "\n" + summary_row(f"{name} {mode}", outcomes)
    print(report)  # pytest -s shows the per-question table
    top1_floor, top3_floor = floors[mode]
    assert len(cases) == size
    assert sum(o.hit1 for o in outcomes) >= top1_floor, report
    assert sum(o.hit3 for o in outcomes) >= top3_floor, report
    if (name, mode) == (TOP1_TARGET[0], "hybrid"):
        assert sum(o.hit1 for o in outcomes) >= TOP1_TARGET[1] * len(cases), report


# follow-ups-v1 (100 conversations, written 2026-12-03 from the pages alone, their asks
# removed, by someone who saw no retriever output; a development set: 36 continue a topic,
# 33 move to a neighbouring page, 31 start a new topic mid-chat). Top-1 / top-3 with the
# earlier turns and with them ignored: BM25 82/94 and 65/88, dense alone 82/94 and 72/87,
# hybrid 90/97 and 77/93. Floors one question under the measured figures; the gap is the
# point: earlier turns must keep carrying the topic, on the dense side too.
FOLLOW_UPS = DEFAULT_SET.with_name("follow-ups-v1.jsonl")


def test_follow_ups_find_their_page_through_the_earlier_turns(hybrid_corpus_retriever) -> None:
    cases = load_cases(FOLLOW_UPS)
    assert len(cases) == 100 and all(c.history for c in cases)
    with_history = run(cases, retriever_mode(hybrid_corpus_retriever))
    search = retriever_mode(hybrid_corpus_retriever)
    without = run(cases, lambda question, _turns: search(question, ()))
    report = summary_row("with history", with_history) + "\n" + summary_row("without", without)
    print(report)
    assert sum(o.hit1 for o in with_history) >= 89, report
    assert sum(o.hit3 for o in with_history) >= 96, report
    # History wins questions and loses few: measured, 15 found at top-1 only with it, 2
    # only without it (a new topic the earlier turn pulled aside).
    pairs = list(zip(with_history, without, strict=True))
    gained = sum(o.hit1 and not w.hit1 for o, w in pairs)
    lost = sum(w.hit1 and not o.hit1 for o, w in pairs)
    assert gained >= 12 and lost <= 3, report
