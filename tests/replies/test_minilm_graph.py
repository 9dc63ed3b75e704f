"""The ONNX MiniLM (minilm_graph.py) against the numpy reference, and its cached model file.

Real model, real onnxruntime: the fp32 graph must be the reference's forward pass; the
int8 model the service runs must stay close to it and rank like it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from chatbot_sessions.replies import embeddings
from chatbot_sessions.replies.embeddings import (
    Encoder,
    load_session,
    model_cache_file,
    model_dir,
    model_identity,
    shared_encoder,
)
from chatbot_sessions.replies.minilm_graph import build_graph
from tests.support.minilm_reference import ReferenceEncoder
from tests.support.processes import REPO_ROOT
from tests.support.threads import run_in_threads

# Lengths from one token to a few hundred words (truncated at 256 tokens), so one batch
# pads most rows: a mask that were not honoured would change their vectors.
TEXTS = [
    "ttl",
    "How do I set the session TTL?",
    "Redis keeps every session under one key; the TTL is refreshed on every access.",
    "What happens when Redis is down? The service answers 503 within the socket timeout "
    "and the client retries after the Retry-After header says so.",
    " ".join(["streaming replies can be stopped and resumed after the last event"] * 40),
    "émojis 🙂 and accents: où est la configuration ?",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return ReferenceEncoder().encode(TEXTS)


@pytest.fixture(scope="module")
def fp32_encoder(tmp_path_factory) -> Encoder:
    path = tmp_path_factory.mktemp("fp32") / "fp32.onnx"
    path.write_bytes(build_graph(model_dir()).SerializeToString())
    return Encoder(embeddings._session(path), "fp32-under-test")  # the service's session options


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory) -> Path:
    """A cache folder holding one model file, built for real once for this module."""
    folder = tmp_path_factory.mktemp("model-cache")
    load_session(str(folder))
    return folder


def test_fp32_graph_is_the_reference_forward_pass(fp32_encoder, reference) -> None:
    batched = fp32_encoder.encode(TEXTS, batch_size=len(TEXTS))  # one batch, padded rows
    alone = np.stack([fp32_encoder.encode([text])[0] for text in TEXTS])
    assert batched.shape == (len(TEXTS), 384) and batched.dtype == np.float32
    assert cosines(batched, reference).min() >= 0.9999, cosines(batched, reference)
    assert cosines(alone, reference).min() >= 0.9999
    assert np.allclose(batched, alone, atol=1e-5)  # padding changes nothing
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_int8_model_stays_close_to_the_reference(reference) -> None:
    # Measured on 200 texts of the corpus and the question sets: min 0.987, mean 0.994.
    encoder = shared_encoder()
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert cosines(vectors, reference).min() >= 0.98, cosines(vectors, reference)
    assert cosines(vectors, reference).mean() >= 0.99
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # One text per run (the default): a text's vector is its own, whatever comes with it.
    assert np.array_equal(vectors[1], encoder.encode([TEXTS[1]])[0])
    # In one padded batch activations share a quantisation scale, so vectors move a little,
    # but the mask holds: padding counted would pull the short texts far off.
    batched = encoder.encode(TEXTS, batch_size=len(TEXTS))
    assert cosines(batched, reference).min() >= 0.97, cosines(batched, reference)
    assert encoder.encode([]).shape == (0, 384)


def test_int8_model_ranks_paraphrases_first() -> None:
    encoder = shared_encoder()
    docs = [
        "Sessions expire after SESSION_TTL seconds without activity.",
        "The chat widget is added to a page with one script tag.",
        "When Redis is unreachable the API answers 503 store_unavailable.",
    ]
    questions = [
        "how long until an idle conversation is forgotten?",
        "how do I put the chat on my own website",
        "what do clients get if the database is down",
    ]
    similarity = encoder.encode(questions) @ encoder.encode(docs).T
    assert list(similarity.argmax(axis=1)) == [0, 1, 2], similarity
    assert (similarity.diagonal() - np.sort(similarity, axis=1)[:, -2] < 0).sum() == 0


def test_concurrent_encoding_gives_the_serial_vectors() -> None:
    encoder = shared_encoder()
    serial = [encoder.encode([text])[0] for text in TEXTS]
    results: dict[int, list[np.ndarray]] = {}

    def work(index: int) -> None:
        order = TEXTS[index % len(TEXTS) :] + TEXTS[: index % len(TEXTS)]
        results[index] = [encoder.encode([text])[0] for text in order * 3]

    run_in_threads(work, 6, indexed=True, timeout=120)
    assert len(results) == 6
    for index, vectors in results.items():
        for j, vector in enumerate(vectors):
            assert np.array_equal(vector, serial[(index + j) % len(TEXTS)])


def test_a_second_start_reads_the_cached_model(built_cache, monkeypatch) -> None:
    path = model_cache_file(str(built_cache))
    before = path.stat()
    monkeypatch.setattr(embeddings, "build_model", pytest.fail)  # must not be called
    session = load_session(str(built_cache))
    assert session.get_modelmeta().custom_metadata_map[embeddings.IDENTITY_KEY] == (
        model_identity()
    )
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # written by rename from a temporary file: nothing else is left but the build lock
    assert sorted(p.name for p in built_cache.iterdir()) == [path.name, path.name + ".lock"]


def test_workers_starting_together_build_the_model_once(tmp_path, monkeypatch) -> None:
    builds = []
    real_build = embeddings.build_model

    def counted_build(out: Path) -> None:
        builds.append(out)
        real_build(out)

    monkeypatch.setattr(embeddings, "build_model", counted_build)
    sessions = []
    run_in_threads(lambda: sessions.append(load_session(str(tmp_path))), 3, timeout=120)
    assert len(sessions) == 3
    assert len(builds) == 1  # the others waited on the lock, then read the cached file
    identities = {s.get_modelmeta().custom_metadata_map[embeddings.IDENTITY_KEY] for s in sessions}
    assert identities == {model_identity()}


@pytest.mark.parametrize("damage", [b"", b"not onnx at all", "truncate", "other-model"])
def test_a_corrupt_cached_model_is_rebuilt(built_cache, tmp_path, caplog, damage) -> None:
    good = model_cache_file(str(built_cache))
    path = model_cache_file(str(tmp_path))
    if damage == "truncate":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif damage == "other-model":  # a valid model file, made by another builder revision
        model = onnx.load(str(good))
        onnx.helper.set_model_props(model, {embeddings.IDENTITY_KEY: "another-encoder"})
        onnx.save(model, str(path))
    else:
        path.write_bytes(damage)
    with caplog.at_level(logging.WARNING, logger="chatbot_sessions.replies.embeddings"):
        session = load_session(str(tmp_path))
    assert "building it again" in caplog.text
    assert session.get_modelmeta().custom_metadata_map[embeddings.IDENTITY_KEY] == (
        model_identity()
    )
    encoder = Encoder(load_session(str(tmp_path)), model_identity())  # repaired: read back
    assert np.allclose(encoder.encode(TEXTS[:2]), shared_encoder().encode(TEXTS[:2]), atol=1e-5)


def test_unwritable_cache_folder_only_costs_the_cache(tmp_path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="chatbot_sessions.replies.embeddings"):
        session = load_session(str(blocker / "cache"))
    assert "could not write" in caplog.text
    assert Encoder(session, model_identity()).encode(["ttl"]).shape == (1, 384)


def _builds(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() != str(pid):
            continue
        with contextlib.suppress(OSError):  # the build, not a helper an import may spawn
            if b"minilm_graph" in (status.parent / "cmdline").read_bytes():
                found.append(int(status.parent.name))
    return found


def test_a_build_whose_worker_is_killed_stops_too(tmp_path) -> None:
    # A worker killed mid-build (gunicorn's timeout, a deploy) must not leave its 650 MB
    # build running while the next worker starts another.
    code = (
        "import sys; from chatbot_sessions.replies import embeddings as e; "
        f"e.load_session({str(tmp_path / 'cache')!r})"
    )
    scratch = tmp_path / "tmp"  # where the build writes (the worker's temporary folder)
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(scratch)}
    worker = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (builds := _builds(worker.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert builds, "the build never started"
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in builds) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{pid}").exists() for pid in builds), "the build outlived it"
        # Nothing made was kept: not in the cache, not the 59 MB in the temporary folder.
        assert not list((tmp_path / "cache").glob("*.onnx"))
        assert not list(scratch.rglob("*.onnx"))
    finally:
        worker.kill()
