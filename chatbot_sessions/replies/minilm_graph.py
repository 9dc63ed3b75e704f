"""all-MiniLM-L6-v2 as an ONNX graph, written node by node from the installed weights.

No torch export: ``build_graph`` lays out the BERT forward pass sentence-transformers runs
(embeddings, six encoder layers, mean pooling over the attention mask, L2 normalisation)
with ``onnx.helper``, the safetensors arrays as initializers. ``quantize`` turns its weight
matrices into int8 (dynamic quantisation: activations are quantised per call, so no
calibration data is needed); that is the model the service runs (embeddings.py), about
four times less arithmetic per token than fp32 on CPUs with int8 dot products.

Run as ``python -m chatbot_sessions.replies.minilm_graph MODEL_DIR OUT KEY IDENTITY PARENT_PID`` it
writes the quantised model to OUT: embeddings.py builds in such a child process, because
the build peaks at about 600 MB that a worker would otherwise keep. Imports nothing of the
service, so the child needs only onnx, onnxruntime, numpy and safetensors.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: ONNX opset: 17 brought LayerNormalization (one onnxruntime kernel), 18 the axes of
#: ReduceL2 as an input, as ReduceSum has them.
OPSET = 18
#: Quantisation, chosen by measured agreement and speed (docs/performance.md): signed int8
#: weights, one scale per output column, MatMul only (the embedding tables stay fp32: a
#: Gather costs nothing, and quantising it only lowered agreement).
QUANT_OPTIONS = {"weight_type": "QInt8", "per_channel": True, "op_types": ("MatMul",)}

# The mask bias added to attention scores of padding; what the numpy reference uses too.
_MASKED = -1e9


class _Graph:
    """Collects nodes and initializers; ``op`` adds a node and returns its output's name."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attrs) -> str:
        self._count += 1
        out = name or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out


def build_graph(directory: Path) -> onnx.ModelProto:
    """The fp32 forward pass of the model in ``directory`` (config.json, model.safetensors).

    Inputs ``input_ids`` and ``attention_mask`` (int64, batch x sequence, both dynamic);
    output ``embeddings`` (float32, batch x hidden), unit length per row.
    """
    from safetensors.numpy import load_file

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    eps = float(config["layer_norm_eps"])
    head_dim = hidden // heads
    w = load_file(str(directory / "model.safetensors"))
    g = _Graph()

    def linear(x: str, name: str) -> str:
        # torch stores Linear weights as (out, in); MatMul wants (in, out).
        weight = g.const(name + ".weight", w[name + ".weight"].T)
        # Named after the layer: quantisation can be told which to leave in fp32.
        product = g.op("MatMul", x, weight, name=name)
        return g.op("Add", product, g.const(name + ".bias", w[name + ".bias"]))

    def layer_norm(x: str, name: str) -> str:
        scale = g.const(name + ".weight", w[name + ".weight"])
        bias = g.const(name + ".bias", w[name + ".bias"])
        return g.op("LayerNormalization", x, scale, bias, axis=-1, epsilon=eps)

    zero = g.const("zero", np.array([0], dtype=np.int64))
    one = g.const("one", np.array([1], dtype=np.int64))
    split_heads = g.const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = g.const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))

    # Embeddings: word + position (the first `sequence` rows) + token type 0.
    words = g.op(
        "Gather", g.const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"
    )
    length = g.op("Slice", g.op("Shape", "input_ids"), one, g.const("two", np.array([2], np.int64)))
    positions = g.op(
        "Slice",
        g.const("position_embeddings", w["embeddings.position_embeddings.weight"]),
        zero,
        length,
        zero,
    )
    token_type = g.const("token_type_0", w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(g.op("Add", g.op("Add", words, positions), token_type), "embeddings.LayerNorm")

    # Padding gets a large negative score before softmax: (1 - mask) * -1e9, as (B, 1, 1, S).
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    inverted = g.op("Sub", g.const("one_f", np.array(1.0, np.float32)), mask)
    bias = g.op("Mul", inverted, g.const("masked", np.array(_MASKED, np.float32)))
    bias = g.op("Unsqueeze", bias, g.const("axes_1_2", np.array([1, 2], np.int64)))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    sqrt_half = g.const("sqrt_half", np.array(np.sqrt(0.5), np.float32))
    half = g.const("half", np.array(0.5, np.float32))
    one_f = "one_f"

    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}."

        def heads_of(name: str, perm: list[int], x: str = x, p: str = p) -> str:
            projected = linear(x, p + f"attention.self.{name}")
            return g.op("Transpose", g.op("Reshape", projected, split_heads), perm=perm)

        q = heads_of("query", [0, 2, 1, 3])  # (B, H, S, D)
        k = heads_of("key", [0, 2, 3, 1])  # (B, H, D, S)
        v = heads_of("value", [0, 2, 1, 3])
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), scale), bias)
        probs = g.op("Softmax", scores, axis=-1)
        context = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
        context = g.op("Reshape", context, merge_heads)
        attended = g.op("Add", linear(context, p + "attention.output.dense"), x)
        x = layer_norm(attended, p + "attention.output.LayerNorm")
        # GELU with the exact erf, as BERT was trained: x * 0.5 * (1 + erf(x / sqrt 2)).
        inner = linear(x, p + "intermediate.dense")
        erf = g.op("Erf", g.op("Mul", inner, sqrt_half))
        gelu = g.op("Mul", g.op("Mul", inner, half), g.op("Add", erf, one_f))
        x = layer_norm(g.op("Add", linear(gelu, p + "output.dense"), x), p + "output.LayerNorm")

    # Mean over the real tokens, then unit length.
    weights = g.op("Unsqueeze", mask, g.const("axis_2", np.array([2], np.int64)))
    summed = g.op("ReduceSum", g.op("Mul", x, weights), one, keepdims=0)
    counts = g.op("ReduceSum", weights, one, keepdims=0)
    tiny = g.const("tiny", np.array(1e-12, np.float32))
    pooled = g.op("Div", summed, g.op("Max", counts, tiny))
    norm = g.op("Max", g.op("ReduceL2", pooled, one, keepdims=1), tiny)
    g.nodes.append(helper.make_node("Div", [pooled, norm], ["embeddings"]))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what onnxruntime releases since 1.10 all read
    onnx.checker.check_model(model)
    return model


def quantize(
    model: onnx.ModelProto,
    *,
    weight_type: str = QUANT_OPTIONS["weight_type"],
    per_channel: bool = QUANT_OPTIONS["per_channel"],
    op_types: tuple[str, ...] = QUANT_OPTIONS["op_types"],
) -> bytes:
    """``model`` with int8 weights (onnxruntime's dynamic quantisation), serialised."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="minilm-quant-") as tmp:
        source, target = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        onnx.save(model, source)
        quantize_dynamic(
            source,
            target,
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            weight_type=QuantType[weight_type],
        )
        return Path(target).read_bytes()


def _exit_with_parent(out: Path, parent: int) -> Callable[[], None]:
    """Stop, removing ``out``, as soon as the process that started this build is gone (a
    worker killed by gunicorn's timeout, a deploy, the OOM killer): an orphaned build would
    hold its 650 MB while the next worker starts another, and leave its file behind. The
    watch runs between the build's steps (a long C call holds it off); the returned check is
    for the end, when the build may have finished before the watch saw anything. The
    parent gives its own pid: read here, after the imports, ``getppid`` would already name
    whoever adopted an orphan."""

    def orphaned() -> None:
        if os.getppid() != parent:
            with contextlib.suppress(OSError):
                out.unlink()
            os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.2)
            orphaned()

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
    return orphaned


def main(argv: list[str]) -> None:
    """``MODEL_DIR OUT KEY IDENTITY PARENT_PID``: write the quantised model, ``IDENTITY`` in
    its metadata under ``KEY``; stop if process ``PARENT_PID`` (the starter) goes away."""
    directory, out, identity_key, identity, parent = argv
    check_parent = _exit_with_parent(Path(out), int(parent))
    check_parent()  # the worker may have died while this process was importing
    model = build_graph(Path(directory))
    helper.set_model_props(model, {identity_key: identity})
    Path(out).write_bytes(quantize(model))
    check_parent()


if __name__ == "__main__":
    main(sys.argv[1:])
