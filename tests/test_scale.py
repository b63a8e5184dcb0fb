"""Scale: chunked full-batch training, partial_fit, memory-mapped input, Dask grid search.

References: the one-shot solvers (all frames at once) for the chunked ones,
dense formulas written out here for the mini-batch basis update, ``fit`` with
``max_iter=k`` for ``k`` mini-batch steps of DeepNMF on the same data,
tracemalloc for memory, and a local joblib run for the Dask one.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import xlogy
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from sklearn_unfold import DeepNMF, DiscriminativeNMF, SparseNMF
from sklearn_unfold._nmf.chunks import frame_buffer, frame_chunks, imap_chunks, is_memmap_backed, map_chunks
from sklearn_unfold._nmf.updates import (
    fit_sparse_nmf,
    infer_activations,
    infer_activations_batched,
    initial_activations,
)
from sklearn_unfold._nmf.updates import init_bases, init_training_activations
from conftest import source_mixture

F, R = 6, 3


def spectra(n=200, n_features=10, seed=0, dtype=np.float64):
    """Noisy rank-4 non-negative data, frames in rows."""
    rng = np.random.default_rng(seed)
    X = rng.gamma(1.0, size=(n, 4)) @ rng.gamma(1.0, size=(4, n_features))
    return (X * rng.uniform(0.7, 1.3, X.shape)).astype(dtype)


def mixture(n=160, n_context=2, seed=0, dtype=np.float64):
    return source_mixture(n, F, n_context, 2, seed, dtype)


def deep_params(**kwargs):
    base = dict(n_components=R, n_layers=4, n_trained_layers=2, n_context=2, sparsity=0.1, max_iter=6,
                tol=0.0, bases_max_iter=15, random_state=0)
    base.update(kwargs)
    return base


def quietly(func, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return func(*args)


def to_memmap(tmp_path, name, A):
    np.save(tmp_path / f"{name}.npy", A)
    return np.load(tmp_path / f"{name}.npy", mmap_mode="r")


# --------------------------------------------------------------------------
# Chunk helpers
# --------------------------------------------------------------------------
def test_frame_chunks_none_is_one_chunk():
    assert frame_chunks(7, None) == [slice(0, 7)]
    assert frame_chunks(0, None) == []
    assert frame_chunks(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_imap_chunks_is_map_chunks_in_order_and_lazy(n_jobs):
    chunks = frame_chunks(50, 7)
    calls = []

    def func(c):
        calls.append(c.start)
        return np.arange(c.start, c.stop) ** 2

    expected = map_chunks(func, chunks, n_jobs)
    calls.clear()
    stream = imap_chunks(func, chunks, n_jobs)
    first = next(stream)
    assert_array_equal(first, expected[0])
    if n_jobs == 1:
        # Sequentially, a chunk is only computed when its result is asked for.
        assert calls == [0]
    rest = list(stream)
    for got, want in zip([first, *rest], expected):
        assert_array_equal(got, want)


def test_frame_buffer_follows_the_data(tmp_path):
    X = spectra(30)
    plain = frame_buffer(30, 4, np.float32, like=X)
    assert plain.shape == (4, 30) and plain.dtype == np.float32 and not is_memmap_backed(plain)
    # In memory: C-ordered like the other (values, frames) arrays of the solvers.
    assert plain.flags.c_contiguous
    mapped = frame_buffer(30, 4, np.float64, like=to_memmap(tmp_path, "X", X)[2:])
    assert is_memmap_backed(mapped) and mapped.shape == (4, 30)
    # On disk: the frames of a chunk are contiguous (transpose of a C-ordered memmap).
    assert mapped.T.flags.c_contiguous
    mapped[:] = 1.5
    assert float(mapped.sum()) == 1.5 * 120


# --------------------------------------------------------------------------
# Chunked full-batch SparseNMF
# --------------------------------------------------------------------------
@pytest.mark.parametrize("beta, mu", [(0.0, 0.1), (0.5, 0.0), (1.0, 0.2), (2.0, 0.1), (3.0, 0.0)])
def test_chunked_fit_is_the_one_shot_algorithm(beta, mu):
    M = spectra(90).T + 0.01
    W = init_bases(M, 4, "exemplar", 0)
    H = init_training_activations(M, W, 0)
    W1, H1, n1, curve1 = fit_sparse_nmf(M, W, H, beta=beta, mu=mu, max_iter=25, tol=0)
    buffer = frame_buffer(M.shape[1], 4, M.dtype)
    buffer[...] = H
    W2, H2, n2, curve2 = fit_sparse_nmf(M, W, buffer, beta=beta, mu=mu, max_iter=25, tol=0, batch_size=16)
    assert n1 == n2 == 25
    assert_allclose(W2, W1, rtol=1e-9, atol=1e-12)
    assert_allclose(H2, H1, rtol=1e-9, atol=1e-12 * H1.max())
    assert_allclose(curve2, curve1, rtol=1e-11)
    assert np.all(np.diff(curve2) <= 1e-12 * abs(curve2[0]))


def test_init_training_activations_chunked_is_bit_identical():
    M = spectra(37).T
    W = init_bases(M, 3, "random", 1)
    one_shot = init_training_activations(M, W, check_random_state(5))
    out = frame_buffer(37, 3, M.dtype)
    init_training_activations(M, W, check_random_state(5), out=out, batch_size=8)
    assert_array_equal(out, one_shot)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_nmf_batch_size_and_memmap(tmp_path, dtype):
    X = spectra(150, dtype=dtype)
    one = quietly(SparseNMF(4, sparsity=0.1, max_iter=40, random_state=0).fit, X)
    chunked = quietly(SparseNMF(4, sparsity=0.1, max_iter=40, random_state=0, batch_size=32).fit, X)
    mapped = quietly(SparseNMF(4, sparsity=0.1, max_iter=40, random_state=0, batch_size=32).fit,
                     to_memmap(tmp_path, "X", X))
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    assert chunked.components_.dtype == dtype
    assert_allclose(chunked.components_, one.components_, rtol=rtol, atol=rtol * 1e-2)
    assert_allclose(chunked.loss_curve_, one.loss_curve_, rtol=rtol)
    # The same algorithm whether the data and the state are in memory or on
    # disk; equal to rounding (the in-memory state is C-ordered, the on-disk
    # state frame-major, so BLAS may sum in another order).
    assert_allclose(mapped.components_, chunked.components_, rtol=1e-12 if dtype == np.float64 else 1e-5)
    assert_allclose(mapped.loss_curve_, chunked.loss_curve_, rtol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_batched_inference_is_per_frame_inference(tol):
    M = spectra(70).T
    W = init_bases(M, 4, "exemplar", 0)
    H_all, _, _ = infer_activations(M, W, initial_activations(M, W), beta=1.0, mu=0.1, max_iter=50, tol=tol)
    H = infer_activations_batched(M, W, beta=1.0, mu=0.1, max_iter=50, tol=tol, batch_size=9)
    assert_allclose(H, H_all, rtol=1e-12, atol=1e-12 * H_all.max())
    est = quietly(SparseNMF(4, sparsity=0.1, tol=tol, random_state=0).fit, M.T)
    H_one = est.transform(M.T)
    H_chunked = est.set_params(batch_size=9).transform(M.T)
    assert_allclose(H_chunked, H_one, rtol=1e-12, atol=1e-12 * H_one.max())


def _peak_bytes(func):
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sparse_nmf_memory_does_not_grow_with_memmapped_data(tmp_path):
    est = SparseNMF(3, max_iter=3, tol=0, random_state=0, batch_size=200)
    peaks = []
    for n in (2000, 8000):
        X = to_memmap(tmp_path, f"X{n}", spectra(n, n_features=24))
        peaks.append(_peak_bytes(lambda: (est.fit(X), est.transform(X[:10]))))
    # Four times the data, same memory (the 8000 x 24 data alone is 1.5 MB).
    assert peaks[1] < 1.25 * peaks[0], peaks
    assert peaks[1] < 8000 * 24 * 8 / 2


# --------------------------------------------------------------------------
# SparseNMF.partial_fit
# --------------------------------------------------------------------------
def ref_parts(M, W, H, beta):
    """Gradient parts of D_beta(M | W H) in W, entry-wise: (M Lam^(b-2)) H^T, Lam^(b-1) H^T."""
    Lam = W @ H
    return (M * Lam ** (beta - 2)) @ H.T, Lam ** (beta - 1) @ H.T


def ref_normalized_step(W, neg, pos):
    """Le Roux et al. (2015) normalization-aware update, written out column by column."""
    W_new = np.empty_like(W)
    for r in range(W.shape[1]):
        w = W[:, r]
        num = neg[:, r] + w * np.dot(w, pos[:, r])
        den = pos[:, r] + w * np.dot(w, neg[:, r])
        W_new[:, r] = w * num / den
        W_new[:, r] /= np.linalg.norm(W_new[:, r])
    return W_new


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_partial_fit_is_the_accumulated_normalized_update(beta):
    X = spectra(120, seed=3) + 0.05
    X1, X2 = X[:70], X[70:]
    est = SparseNMF(4, beta_loss=beta, sparsity=0.1, max_iter=80, tol=0, forget_factor=0.3, random_state=0)
    est.partial_fit(X1)
    W0 = init_bases(X1.T, 4, "exemplar", check_random_state(0))

    def activations(Xb, W):
        # Inference with frozen bases, as transform does it.
        return infer_activations_batched(Xb.T, W, beta=beta, mu=0.1, max_iter=80, tol=0)

    neg1, pos1 = ref_parts(X1.T, W0, activations(X1, W0), beta)
    W1 = ref_normalized_step(W0, neg1, pos1)
    assert_allclose(est.components_, W1.T, rtol=1e-10)
    est.partial_fit(X2)
    neg2, pos2 = ref_parts(X2.T, W1, activations(X2, W1), beta)
    W2 = ref_normalized_step(W1, neg2 + 0.3 * neg1, pos2 + 0.3 * pos1)
    assert_allclose(est.components_, W2.T, rtol=1e-10)
    assert est.n_steps_ == 2


def test_partial_fit_streams_to_a_good_model(tmp_path):
    X = to_memmap(tmp_path, "X", spectra(600, seed=4))
    full = quietly(SparseNMF(4, sparsity=0.05, random_state=0).fit, X)
    online = SparseNMF(4, sparsity=0.05, random_state=0, batch_size=50)

    def objective(est):
        H = est.transform(X)
        Lam = H @ est.components_
        return float(np.sum(xlogy(X, X) - xlogy(X, Lam) - X + Lam) + 0.05 * H.sum())

    online.partial_fit(X[:100])
    start = objective(online)
    for _epoch in range(4):
        for batch in frame_chunks(600, 100):
            online.partial_fit(X[batch])
    assert online.n_steps_ == 25
    assert np.allclose(np.linalg.norm(online.components_, axis=1), 1.0)
    final = objective(online)
    # Streaming learns most of what the full-batch fit learns.
    assert final < start
    assert final < 1.1 * objective(full)


def test_partial_fit_api():
    X = spectra(60)
    est = SparseNMF(3, random_state=0).partial_fit(X[:30])
    assert est.n_features_in_ == X.shape[1] and est.n_components_ == 3 and est.n_steps_ == 1
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:, :-1])
    # Deterministic, and after fit it refines the fitted bases.
    again = SparseNMF(3, random_state=0).partial_fit(X[:30])
    assert_array_equal(again.components_, est.components_)
    fitted = quietly(SparseNMF(3, random_state=0, max_iter=30).fit, X)
    assert fitted.n_steps_ == 0
    before = fitted.components_.copy()
    fitted.partial_fit(X[30:])
    assert fitted.n_steps_ == 1 and not np.array_equal(fitted.components_, before)
    # float32 in, float32 bases, also when later batches are float64.
    est32 = SparseNMF(3, random_state=0).partial_fit(X[:30].astype(np.float32))
    est32.partial_fit(X[30:])
    assert est32.components_.dtype == np.float32


def test_partial_fit_combines_batches_at_any_scale():
    X = spectra(80, seed=5) + 0.01
    base = SparseNMF(3, sparsity=0.0, forget_factor=0.5, max_iter=50, tol=0, random_state=0)
    a = clone(base).partial_fit(X[:40]).partial_fit(X[40:])
    # Scaling every batch by the same power of two is the same stream...
    k = 2.0**90
    b = clone(base).partial_fit(X[:40] * k).partial_fit(X[40:] * k)
    assert_allclose(b.components_, a.components_, rtol=1e-12)
    # ...and a batch 2**200 times smaller than the one before hardly counts (beta = 1).
    c = clone(base).partial_fit(X[:40]).partial_fit(X[40:] * 2.0**-200)
    assert np.all(np.isfinite(c.components_))


# --------------------------------------------------------------------------
# DeepNMF: memmap and partial_fit
# --------------------------------------------------------------------------
def test_deep_nmf_memmap_equals_in_memory(tmp_path):
    X, Y = mixture(seed=1)
    est = DeepNMF(**deep_params(batch_size=37)).fit(X, Y)
    mapped = DeepNMF(**deep_params(batch_size=37)).fit(to_memmap(tmp_path, "X", X), to_memmap(tmp_path, "Y", Y))
    # Equal to rounding: in memory the targets and state are C-ordered copies,
    # memory-mapped data stays a view (another summation order in BLAS).
    assert_allclose(mapped.bases_, est.bases_, rtol=1e-12)
    assert_allclose(mapped.trained_components_, est.trained_components_, rtol=1e-10)
    assert_allclose(mapped.loss_curve_, est.loss_curve_, rtol=1e-10)
    assert_allclose(mapped.predict(to_memmap(tmp_path, "X2", X)), est.predict(X), rtol=1e-10)


def test_deep_nmf_memory_does_not_grow_with_memmapped_data(tmp_path):
    peaks = []
    est = DeepNMF(**deep_params(batch_size=250, max_iter=2, bases_max_iter=2))
    for n in (2000, 8000):
        X, Y = mixture(n, seed=2)
        X, Y = to_memmap(tmp_path, f"X{n}", X), to_memmap(tmp_path, f"Y{n}", Y)
        peaks.append(_peak_bytes(lambda: (est.fit(X, Y), est.predict(X[:10]))))
    assert peaks[1] < 1.25 * peaks[0], peaks
    # Y alone is 8000 x 24 x 8 bytes = 1.5 MB.
    assert peaks[1] < 8000 * 24 * 8 / 2


def test_deep_nmf_partial_fit_is_fit_one_step_at_a_time():
    X, Y = mixture(seed=3)
    for k in (1, 3):
        fitted = DeepNMF(**deep_params(max_iter=k)).fit(X, Y)
        online = DeepNMF(**deep_params())
        for _ in range(k):
            online.partial_fit(X, Y)
        assert fitted.n_iter_ == online.n_iter_ == k
        assert online.n_steps_ == k
        assert_array_equal(online.bases_, fitted.bases_)
        assert_array_equal(online.trained_components_, fitted.trained_components_)
        assert_allclose(online.loss_curve_, fitted.loss_curve_[1:], rtol=1e-12)


@pytest.mark.parametrize("Est", [DeepNMF, DiscriminativeNMF])
def test_deep_nmf_partial_fit_streams(Est):
    X, Y = mixture(600, seed=4)
    kwargs = deep_params(batch_size=64)
    if Est is DiscriminativeNMF:
        kwargs.pop("n_trained_layers")
    # Bases learned beforehand (any way); partial_fit trains the layers on a stream.
    bases = DeepNMF(**deep_params(max_iter=0)).fit(X, Y).bases_
    online = Est(**kwargs, bases=bases)
    untrained = Est(**{**kwargs, "max_iter": 0}, bases=bases).fit(X, Y)
    for _epoch in range(3):
        for batch in frame_chunks(600, 100):
            online.partial_fit(X[batch], Y[batch])
    assert online.n_steps_ == 18 and online.n_iter_ >= 1
    assert np.all(online.trained_components_ >= 0)
    assert online.score(X, Y) > untrained.score(X, Y)


def test_deep_nmf_partial_fit_validation():
    X, Y = mixture(seed=5)
    est = DeepNMF(**deep_params()).partial_fit(X, Y)
    # scikit-learn's check_estimators_partial_fit_n_features on valid data.
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:, :-1], Y)
    with pytest.raises(ValueError, match="sources"):
        est.partial_fit(X, np.hstack([Y, Y[:, :12]]))
    # A rejected batch leaves the model as it was.
    assert est.n_steps_ == 1
    assert est.n_features_in_ == X.shape[1]
    C0 = DeepNMF(**deep_params(n_trained_layers=0)).partial_fit(X, Y)
    assert C0.trained_components_.shape[0] == 0 and C0.n_iter_ == 0
    assert_array_equal(C0.predict(X), DeepNMF(**deep_params(n_trained_layers=0)).fit(X, Y).predict(X))


# --------------------------------------------------------------------------
# Grid search on a Dask cluster through joblib
# --------------------------------------------------------------------------
def test_grid_search_on_dask_equals_local_run():
    distributed = pytest.importorskip("distributed")
    import joblib
    from sklearn.model_selection import GridSearchCV, GroupKFold

    from sklearn_unfold import sdr_scorer

    X, Y = mixture(120, seed=6)
    groups = np.arange(120) // 20
    search = GridSearchCV(
        DeepNMF(**deep_params(max_iter=3, bases_max_iter=10)),
        {"n_layers": [2, 4], "n_trained_layers": [0, 1, 2]},
        scoring=sdr_scorer,
        cv=GroupKFold(n_splits=3),
    )
    local = clone(search).fit(X, Y, groups=groups)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
            remote = clone(search).fit(X, Y, groups=groups)
        # The 18 fits (6 candidates x 3 folds) really ran on the two worker processes.
        workers = {task["worker"] for task in tasks.data}
        # Fits ran in the cluster's worker processes (which of the two gets
        # each fast task is the scheduler's choice, so no count is asserted).
        assert tasks.data and workers and workers <= set(client.scheduler_info()["workers"])
    assert remote.best_params_ == local.best_params_
    assert_array_equal(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    assert_array_equal(remote.best_estimator_.predict(X), local.best_estimator_.predict(X))
