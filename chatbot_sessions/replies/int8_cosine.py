"""Cosine of a query to many unit vectors, with the vectors held as int8 under onnxruntime.

The asks of a large knowledge base outnumber its chunks several times over (10,000 chunks
with seven asks each are 70,000 vectors, 107 MB as float32), and a product of one vector
with a matrix that size is bound by memory, not arithmetic: numpy spent 4-7 ms a question
reading it. Each row here is scaled to int8 (its largest component to 127), a quarter of the
bytes, and multiplied by onnxruntime's ``MatMulInteger``, which packs the constant matrix
once for the CPU's integer dot-product instructions: about 1 ms for those 70,000 rows. The
question is quantised per call (``DynamicQuantizeLinear``); the result is within about
0.003 of the float32 cosine (docs/performance.md), finer than any difference a ranking of
asks turns on.
"""

from __future__ import annotations

import numpy as np

#: The ONNX opset of the little graph (DynamicQuantizeLinear needs 11 or later).
OPSET = 17


def quantise_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row as int8 times its own scale: (int8 rows, float32 scale per row)."""
    scale = np.abs(vectors).max(axis=1) / 127.0
    scale = np.maximum(scale, np.finfo(np.float32).tiny).astype(np.float32)
    return np.round(vectors / scale[:, None]).astype(np.int8), scale


class Int8Cosines:
    """``cosines(vector)``: the dot product of ``vector`` with every row given, approximately.

    Thread-safe (onnxruntime's ``run`` is); holds no float32 copy of the rows.
    """

    def __init__(self, vectors: np.ndarray) -> None:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        rows, dimension = vectors.shape
        matrix, scale = quantise_rows(vectors)
        # The matrix is a constant of the graph, not an input: onnxruntime packs a constant
        # once, at load (fed per call it is repacked every time: 7 ms for 70,000 rows, not
        # 1). It is handed over as an OrtValue, not written into the model: serialising it
        # through protobuf left three more copies in the heap (165 MB for those rows
        # against 63).
        transposed = np.ascontiguousarray(matrix.T)
        placeholder = TensorProto(
            name="rows_t",
            data_type=TensorProto.INT8,
            dims=transposed.shape,
            data_location=TensorProto.EXTERNAL,
        )
        placeholder.external_data.add(key="location", value="given-as-ortvalue")
        graph = helper.make_graph(
            [
                helper.make_node("DynamicQuantizeLinear", ["q"], ["q8", "q_scale", "q_zero"]),
                helper.make_node("MatMulInteger", ["q8", "rows_t", "q_zero"], ["dots"]),
                helper.make_node("Cast", ["dots"], ["dots_f"], to=TensorProto.FLOAT),
                helper.make_node("Mul", ["dots_f", "q_scale"], ["scaled"]),
                helper.make_node("Mul", ["scaled", "row_scale"], ["cosines"]),
            ],
            "int8_cosines",
            [helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, dimension])],
            [helper.make_tensor_value_info("cosines", TensorProto.FLOAT, [1, rows])],
            [placeholder, numpy_helper.from_array(scale, "row_scale")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8  # read by every onnxruntime that runs opset 17 (1.12 on)
        options = ort.SessionOptions()
        # One thread: each request thread runs its own search (as the encoder's session).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        # The OrtValue wraps our array without a copy, and the session's options keep it:
        # a session rebuilt from them (onnxruntime's fallback after a provider fails, or
        # ``set_providers``) reads it again, so the array lives as long as the session.
        options.add_external_initializers(
            ["rows_t"], [ort.OrtValue.ortvalue_from_numpy(transposed)]
        )
        self._rows_t = transposed
        self._session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def __call__(self, vector: np.ndarray) -> np.ndarray:
        """Dot product of ``vector`` (float32, the rows' dimension) with every row."""
        query = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        return self._session.run(None, {"q": query})[0][0]
