"""The speech benchmark's mask DNN (benchmarks/_mask_dnn.py): the paper's objective, its gradients, early stopping.

Skipped without torch (the optional ``bench`` extra); the library itself never imports torch.
"""

import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import _mask_dnn  # noqa: E402
from _mask_dnn import MaskDNN, count_params  # noqa: E402


def _data(n_utterances=6, frames=40, F=5, T=3, seed=0):
    """Context-stacked toy magnitudes laid out like the benchmark's X, Y and groups."""
    rng = np.random.default_rng(seed)
    n = n_utterances * frames
    speech = rng.random((n, T * F)).astype(np.float32)
    noise = rng.random((n, T * F)).astype(np.float32)
    X = speech + noise
    Y = np.hstack([speech, noise])
    groups = np.repeat(np.arange(n_utterances), frames)
    return X, Y, groups


def test_loss_and_gradients_match_numpy():
    assert _mask_dnn.self_check(seed=0) < 1e-6
    assert _mask_dnn.self_check(seed=1) < 1e-6


def test_mask_loss_is_the_papers_objective():
    rng = np.random.default_rng(0)
    mask, m, s = rng.random((3, 4, 6))
    expected = np.sum((mask * m - s) ** 2)
    got = _mask_dnn.mask_loss(*(torch.from_numpy(a) for a in (mask, m, s)))
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_fit_predict_layout_and_parameter_count():
    X, Y, groups = _data()
    model = MaskDNN((8, 4), n_context=3, max_epochs=3, n_threads=1).fit(X, Y, groups=groups)
    y_pred = model.predict(X)
    assert y_pred.shape == (X.shape[0], 2 * 5)
    mixture = X[:, -5:]
    # speech = mask * m with the mask in [0, 1]; the residual is the noise estimate
    assert np.all(y_pred[:, :5] >= 0) and np.all(y_pred[:, :5] <= mixture + 1e-6)
    np.testing.assert_allclose(y_pred[:, :5] + y_pred[:, 5:], mixture, rtol=1e-6)
    assert model.n_params_ == count_params(15, (8, 4), 5) == (15 + 1) * 8 + (8 + 1) * 4 + (4 + 1) * 5
    assert np.isfinite(model.score(X, Y))


def test_seeded_fits_are_identical():
    X, Y, groups = _data()
    a = MaskDNN((8,), n_context=3, max_epochs=4, n_threads=1, random_state=3).fit(X, Y, groups=groups)
    b = MaskDNN((8,), n_context=3, max_epochs=4, n_threads=1, random_state=3).fit(X, Y, groups=groups)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.loss_curve_ == b.loss_curve_


def test_early_stopping_keeps_the_best_epoch():
    X, Y, groups = _data()
    model = MaskDNN((16,), n_context=3, max_epochs=30, n_iter_no_change=2, learning_rate=0.05, n_threads=1)
    model.fit(X, Y, groups=groups)
    curve = model.validation_loss_curve_
    assert len(curve) == model.n_iter_
    assert model.best_epoch_ == 1 + int(np.argmin(curve))
    # the kept network is that of the best epoch: its held-out objective is the minimum of the curve
    train, valid = model._split(X.shape[0], groups)
    assert not set(groups[train]) & set(groups[valid])  # whole utterances held out
    m, s = X[valid][:, -5:], Y[valid][:, 5 * 2 : 5 * 3]
    held_out = np.sum((model.predict_mask(X[valid]) * m - s) ** 2) / valid.shape[0]
    assert held_out == pytest.approx(min(curve), rel=1e-4)
