"""all-MiniLM-L6-v2's forward pass in plain numpy: the reference the ONNX graph is checked by.

This was the service's encoder until the int8 ONNX one (chatbot_sessions/replies/
embeddings.py) replaced it; it stays here, written independently of the graph builder,
because it matches sentence-transformers (tests/replies/embedding_reference.json) and is
easy to read: embeddings, six encoder layers, mean pooling over the attention mask, L2
normalisation. It tokenizes as the service does, so vectors compare row for row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from chatbot_sessions.replies.embeddings import DIMENSION, Encoder, model_dir, padded

_SQRT_HALF = np.float32(np.sqrt(0.5))


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


class ReferenceEncoder(Encoder):
    """all-MiniLM-L6-v2 in numpy: ``encode(texts)`` gives unit vectors, one row per text.

    The service's ``Encoder`` with its onnxruntime run replaced by the numpy forward pass:
    same tokenizer, same batching (32 texts at a time by default: numpy's arithmetic is
    exact whatever the batch, unlike dynamic quantisation's).
    """

    def __init__(self, directory: Path | None = None) -> None:
        from safetensors.numpy import load_file

        directory = directory or model_dir()
        super().__init__(None, "numpy-reference", directory)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
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
        return super().encode(texts, batch_size)

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        ids, whole = padded(batch)
        mask = whole.astype(np.float32)
        length = ids.shape[1]
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
