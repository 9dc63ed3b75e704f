"""The int8 cosine of hybrid retrieval's asks against numpy's float32 product."""

from __future__ import annotations

import numpy as np
import pytest

from chatbot_sessions.replies.int8_cosine import Int8Cosines, quantise_rows


def unit_rows(count: int, seed: int, dimension: int = 384) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_cosines_are_within_three_thousandths_of_float32_and_rank_alike() -> None:
    rows = unit_rows(5000, 1)
    cosines = Int8Cosines(rows)
    for seed in range(5):
        # A query near two of the rows, as a paraphrase is near its asks.
        near = rows[seed] + rows[seed + 100] + 0.5 * unit_rows(1, 50 + seed)[0]
        query = near / np.linalg.norm(near)
        got, exact = cosines(query), rows @ query
        assert got.dtype == np.float32 and got.shape == (5000,)
        assert np.abs(got - exact).max() < 3e-3
        assert set(np.argsort(-got)[:2]) == set(np.argsort(-exact)[:2]) == {seed, seed + 100}


def test_each_row_keeps_its_own_scale() -> None:
    # A row of tiny components next to a row of large ones: one scale for both would round
    # the first to zeros.
    rows = np.array([[1e-4, -2e-4, 3e-4], [0.6, -0.8, 0.0]], dtype=np.float32)
    matrix, scale = quantise_rows(rows)
    assert matrix.dtype == np.int8 and np.abs(matrix).max(axis=1).tolist() == [127, 127]
    assert matrix.astype(np.float32) * scale[:, None] == pytest.approx(rows, rel=1e-2, abs=1e-6)
    got = Int8Cosines(rows)(np.array([0.0, 0.0, 1.0], dtype=np.float32))
    assert got == pytest.approx([3e-4, 0.0], abs=1e-5)


def test_a_zero_row_scores_zero_not_nan() -> None:
    rows = np.zeros((2, 8), dtype=np.float32)
    rows[1, 0] = 1.0
    with np.errstate(all="raise"):  # no 0 / 0 on the way
        matrix, scale = quantise_rows(rows)
    assert not matrix[0].any() and np.isfinite(scale).all() and (scale > 0).all()
    got = Int8Cosines(rows)(np.eye(8, dtype=np.float32)[0])
    assert np.isfinite(got).all() and got == pytest.approx([0.0, 1.0], abs=1e-2)
