"""The MiniLM encoders match sentence-transformers; the dense index's disk cache."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from chatbot_sessions.replies import dense
from chatbot_sessions.replies.dense import DenseIndex, corpus_key
from chatbot_sessions.replies.documents import Chunk
from chatbot_sessions.replies.embeddings import DIMENSION, shared_encoder
from tests.support.minilm_reference import ReferenceEncoder
from tests.support.threads import run_in_threads

# Written once by the real sentence-transformers (see "made_with" inside), never by us.
REFERENCE = json.loads((Path(__file__).with_name("embedding_reference.json")).read_text("utf-8"))

CHUNKS = [
    Chunk(doc_title="Pets", heading="Cats", source="cats.md", text="Cats purr and eat fish."),
    Chunk(doc_title="Pets", heading="Dogs", source="dogs.md", text="Dogs need long walks."),
]


def test_numpy_reference_matches_sentence_transformers() -> None:
    ours = ReferenceEncoder().encode(REFERENCE["sentences"])
    reference = np.array(REFERENCE["embeddings"], dtype=np.float32)
    cosine = (ours * reference).sum(axis=1)
    assert ours.shape == (len(REFERENCE["sentences"]), DIMENSION)
    assert cosine.min() > 0.999, cosine
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_service_encoder_is_close_to_sentence_transformers() -> None:
    # int8 weights: close, not equal (test_minilm_graph.py holds the measured margins)
    ours = shared_encoder().encode(REFERENCE["sentences"])
    reference = np.array(REFERENCE["embeddings"], dtype=np.float32)
    assert ours.shape == (len(REFERENCE["sentences"]), DIMENSION) and ours.dtype == np.float32
    # measured 0.964 for "thanks!" (the fewer the tokens, the larger int8's error), the
    # other four 0.993-0.995
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() > 0.95 and np.median(cosine) > 0.99, cosine
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_encoder_gives_one_vector_per_text_in_order() -> None:
    encoder = shared_encoder()
    texts = ["short", "a much longer sentence about redis keys and their time to live", "x"]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)  # padding in a batch changes nothing
    assert encoder.encode([]).shape == (0, DIMENSION)


def test_second_build_reads_the_cache(tmp_path) -> None:
    first = DenseIndex.build(CHUNKS, shared_encoder(), str(tmp_path))
    again = DenseIndex.build(CHUNKS, shared_encoder(), str(tmp_path))
    assert not first.stats.cache_hit and again.stats.cache_hit
    assert again.stats.cache_file == first.stats.cache_file
    assert np.array_equal(first.vectors, again.vectors)
    # written by rename from a temporary file: nothing else is left but the build lock
    name = Path(first.stats.cache_file).name
    assert sorted(p.name for p in tmp_path.iterdir()) == [name, name + ".lock"]


def test_workers_starting_together_embed_the_corpus_once(tmp_path) -> None:
    encoder = shared_encoder()
    calls = []

    class Counting:
        identity = encoder.identity

        def encode(self, texts):
            calls.append(len(texts))
            return encoder.encode(texts)

    built = []
    run_in_threads(lambda: built.append(DenseIndex.build(CHUNKS, Counting(), str(tmp_path))), 3)
    assert calls == [len(CHUNKS)]  # one embedded; the others waited, then read its file
    assert sorted(index.stats.cache_hit for index in built) == [False, True, True]
    assert all(np.array_equal(index.vectors, built[0].vectors) for index in built)


def test_changed_corpus_or_model_is_a_miss(tmp_path) -> None:
    DenseIndex.build(CHUNKS, shared_encoder(), str(tmp_path))
    edited = [CHUNKS[0], Chunk("Pets", "Dogs", "dogs.md", "Dogs need short walks.")]
    assert not DenseIndex.build(edited, shared_encoder(), str(tmp_path)).stats.cache_hit
    texts = ["a", "b"]
    assert corpus_key("model-1", texts) != corpus_key("model-2", texts)
    assert corpus_key("m", ["ab", "c"]) != corpus_key("m", ["a", "bc"])


@pytest.mark.parametrize("damage", [b"", b"not numpy at all", "truncate", "wrong-shape"])
def test_corrupt_cache_is_re_embedded_with_a_warning(tmp_path, caplog, damage) -> None:
    path = Path(DenseIndex.build(CHUNKS, shared_encoder(), str(tmp_path)).stats.cache_file)
    good = np.load(path)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "wrong-shape":
        np.save(path, good[:1])
    else:
        path.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="chatbot_sessions.replies.dense"):
        rebuilt = DenseIndex.build(CHUNKS, shared_encoder(), str(tmp_path))
    assert not rebuilt.stats.cache_hit and "embedding again" in caplog.text
    assert np.allclose(rebuilt.vectors, good)
    assert DenseIndex.build(CHUNKS, shared_encoder(), str(tmp_path)).stats.cache_hit  # repaired


def test_unwritable_cache_folder_only_costs_the_cache(tmp_path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="chatbot_sessions.replies.dense"):
        index = DenseIndex.build(CHUNKS, shared_encoder(), str(blocker / "cache"))
    assert index.vectors.shape == (2, DIMENSION) and "could not write" in caplog.text


def test_query_vector_leans_on_earlier_turns() -> None:
    index = DenseIndex.build(CHUNKS, shared_encoder(), None)
    alone = index.similarities(index.query_vector("what do they need?", (), ()))
    about_dogs = index.similarities(index.query_vector("what do they need?", ["dogs"], [0.35]))
    about_cats = index.similarities(index.query_vector("what do they need?", ["cats"], [0.35]))
    assert about_dogs[1] - about_dogs[0] > alone[1] - alone[0]
    assert about_cats[0] - about_cats[1] > alone[0] - alone[1]
    vector = index.query_vector("q", ["a", "b"], [0.35, 0.2])
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_an_ask_lifts_its_chunk_for_the_question_it_words() -> None:
    question = "what should I feed my kitten?"
    plain = DenseIndex.build(CHUNKS, shared_encoder(), None)
    asked = [CHUNKS[0], Chunk("Pets", "Dogs", "dogs.md", CHUNKS[1].text, asks=(question,))]
    index = DenseIndex.build(asked, shared_encoder(), None)
    before = plain.similarities(plain.query_vector(question, (), ()))
    after = index.similarities(index.query_vector(question, (), ()))
    assert after[0] == pytest.approx(before[0])  # a chunk without asks keeps its cosine
    # the ask matches exactly (cosine 1), so the dogs chunk gains half the gap to it (asks'
    # cosines are int8 products, within 0.003 of float32's: int8_cosine.py)
    expected = (1 - dense.ASK_SHARE) * before[1] + dense.ASK_SHARE * 1.0
    assert after[1] == pytest.approx(expected, abs=2e-3) and after[1] > before[1]
    assert index.vectors.shape == (2, DIMENSION) and index.ask_count == 1


def test_asks_are_embedded_once_and_cached_with_the_chunks(tmp_path) -> None:
    ask = "is it safe for dogs?"
    asked = [replace(c, asks=(ask,)) for c in CHUNKS]  # one ask shared by two chunks
    first = DenseIndex.build(asked, shared_encoder(), str(tmp_path))
    again = DenseIndex.build(asked, shared_encoder(), str(tmp_path))
    assert first.ask_count == 1 and again.stats.cache_hit
    vector = first.query_vector(ask, (), ())
    assert np.array_equal(first.similarities(vector), again.similarities(vector))
    # an edited ask is a different corpus: a new cache file, embedded again
    edited = DenseIndex.build(
        [replace(c, asks=("is it safe for cats?",)) for c in CHUNKS],
        shared_encoder(),
        str(tmp_path),
    )
    assert not edited.stats.cache_hit and edited.stats.cache_file != first.stats.cache_file
