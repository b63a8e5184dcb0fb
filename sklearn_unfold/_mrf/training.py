"""Discriminative training of an unfolded MRF network.

The objective is the cross-entropy between the layer-K beliefs and binary
labels, averaged over samples and summed over hidden units, plus an optional
L2 penalty on the couplings and observation weights:

.. math::

    \\mathcal{E} = \\frac{1}{n} \\sum_{s, i} \\big[\\operatorname{softplus}(\\eta^K_{si})
                   - y_{si} \\eta^K_{si}\\big]
                   + \\frac{\\ell_2}{2} \\sum_k \\big(\\|a^k\\|^2 + \\|w^k\\|^2 + \\|C^k\\|^2\\big).

Its gradient with respect to ``eta^K`` is ``(sigmoid(eta^K) - y) / n``; the rest
is :func:`.network.backward`.  :func:`fit_network` runs mini-batch Adam with
optional early stopping on a held-out fraction (per-label accuracy); on request
a Ctrl-C ends it with the result of the last complete epoch.
"""

import time

import numpy as np
from scipy.special import expit

from .._fitting import run_interruptible
from .network import backward, forward
from .optimizer import Adam
from .power_mean import softplus

PENALIZED = ("coupling", "local", "dense")


def init_params(
    spec,
    n_features,
    *,
    observation="dense",
    schedule="none",
    lambdas=None,
    tied=(),
    dtype=np.float64,
    random_state,
):
    """Initial parameters of an unfolded network.

    Couplings and dense observation weights start small and random (so that
    the seed matters and latent units are distinguishable), local observation
    weights near 1 (unit i starts by trusting feature i), biases at 0, the
    schedule at ``alpha = 1/2`` and lambda at ``lambdas``.

    Parameters
    ----------
    spec : NetworkSpec
    n_features : int
    observation : {"dense", "local", "local+dense"}
    schedule : {"none", "layer", "edge"}
    lambdas : ndarray of shape (1,) or (n_layers,) or None
        Initial lambda (``kind="bp"``); length 1 ties it across layers.
    tied : tuple of str
        Parameter names with a single copy shared by all layers.
    dtype : dtype
    random_state : numpy.random.RandomState

    Returns
    -------
    params : dict of ndarray
    """
    g = spec.graph
    N, E, K = g.n_nodes, g.n_edges, spec.n_layers
    rng = random_state

    def n(name):
        return 1 if name in tied else K

    n_coupling = E if spec.symmetric else 2 * E
    params = {
        "coupling": 0.1 * rng.standard_normal((n("coupling"), n_coupling)),
        "bias": np.zeros((n("bias"), N)),
    }
    if observation in ("local", "local+dense"):
        params["local"] = 1.0 + 0.1 * rng.standard_normal((n("local"), n_features))
    if observation in ("dense", "local+dense"):
        scale = 0.1 / np.sqrt(max(n_features, 1))
        params["dense"] = scale * rng.standard_normal((n("dense"), N, n_features))
    if schedule == "layer":
        params["schedule"] = np.zeros((n("schedule"), 1))
    elif schedule == "edge":
        params["schedule"] = np.zeros((n("schedule"), 2 * E))
    if spec.kind == "bp":
        params["lambda"] = np.ones(1) if lambdas is None else np.asarray(lambdas, dtype=float)
    return {key: np.ascontiguousarray(value, dtype=dtype) for key, value in params.items()}


def cross_entropy(eta, Y):
    """Binary cross-entropy from log-odds: mean over rows, sum over columns.

    Returns
    -------
    loss : float
    grad : ndarray, same shape as ``eta``
        ``(sigmoid(eta) - Y) / n_samples``.
    """
    n = eta.shape[0]
    loss = float(np.sum(softplus(eta) - Y * eta)) / n
    return loss, (expit(eta) - Y) / n


def loss_and_grad(params, spec, X, Y, *, l2=0.0, need_lambda=True, buffers=None):
    """Training objective and its gradient with respect to every parameter.

    The loss covers the first ``Y.shape[1]`` hidden units; any further ones are
    latent.  ``need_lambda=False`` leaves the gradient with respect to lambda at 0.
    ``buffers``: work arrays reused from call to call (see :func:`.network.forward`).

    Returns
    -------
    loss : float
    grads : dict of ndarray
    """
    eta, trace = forward(params, spec, X, buffers=buffers)
    # Only the first Y.shape[1] units are labelled; the rest are latent.
    n_out = Y.shape[1]
    loss, grad_out = cross_entropy(eta[:, :n_out], Y)
    grad_eta = grad_out if n_out == eta.shape[1] else np.pad(grad_out, ((0, 0), (0, eta.shape[1] - n_out)))
    grads = backward(params, spec, X, trace, grad_eta, need_lambda=need_lambda)
    if l2:
        for key in PENALIZED:
            if key in params:
                loss += 0.5 * l2 * float(np.sum(params[key] ** 2))
                grads[key] += l2 * params[key]
    return loss, grads


def _auto_batch_size(spec, params):
    """Rows per forward chunk keeping the per-edge work arrays in a core's L2 cache.

    Per-edge layers hold several ``(2E, rows)`` arrays: about 2**16 values each
    (256 KiB in float32) measured fastest, 2-3x faster than 1024 rows on a
    16x16 grid.  Node-level mean-field layers only hold ``(N, rows)`` arrays.
    """
    g = spec.graph
    width = g.n_nodes if spec.kind == "mf" and "schedule" not in params else 2 * g.n_edges
    return int(min(1024, max(16, 2**16 // max(width, 1))))


def predict_log_odds(params, spec, X, batch_size=None):
    """Output beliefs ``eta^K`` for ``X``, in chunks of rows to bound memory.

    ``batch_size=None`` picks the chunk from the graph's size (16 to 1024 rows,
    see :func:`_auto_batch_size`); the rows are independent, so the chunk
    changes nothing but rounding in the matrix products.
    """
    if batch_size is None:
        batch_size = _auto_batch_size(spec, params)
    buffers = {}  # work arrays shared by the chunks
    parts = [
        forward(params, spec, X[i : i + batch_size], keep_trace=False, buffers=buffers)[0]
        for i in range(0, X.shape[0], batch_size)
    ]
    if not parts:
        return np.zeros((0, spec.graph.n_nodes), dtype=X.dtype)
    return np.concatenate(parts)


def fit_network(
    params,
    spec,
    X,
    Y,
    *,
    trainable,
    l2=0.0,
    learning_rate=0.01,
    max_iter=200,
    tol=1e-4,
    n_iter_no_change=10,
    batch_size=200,
    shuffle=True,
    early_stopping=False,
    validation_fraction=0.1,
    random_state,
    verbose=0,
    stop_on_interrupt=False,
    name="fit_network",
):
    """Train ``params`` in place with mini-batch Adam on the cross-entropy.

    With ``early_stopping``, ``validation_fraction`` of the samples are held
    out and training stops on their *cross-entropy*, not their accuracy: the
    accuracy of a few hundred pixels moves in steps and stalls for tens of
    epochs while the model still improves, so a patience of 10 epochs stopped
    some fits after about 20 epochs (issue 15); the loss is smooth. The
    parameters of the epoch with the lowest validation loss are kept. When
    the data are too few to hold anything out (fewer than 2 samples),
    training uses them all and stops on the training loss.

    Parameters
    ----------
    params : dict of ndarray
        Initial parameters, updated in place.
    spec : NetworkSpec
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_outputs), values in {0, 1}
        Labels of the first ``n_outputs`` hidden units (the others are latent).
    trainable : iterable of str
        Keys of ``params`` that are trained; the others stay fixed.
    l2 : float
    learning_rate : float
    max_iter : int
        Maximum number of epochs.
    tol : float
        An epoch improves if the loss watched (validation loss with early
        stopping, training loss otherwise) drops by more than ``tol``.
    n_iter_no_change : int
        Stop after this many epochs without improvement.
    batch_size : int
    shuffle : bool
    early_stopping : bool
    validation_fraction : float
    random_state : numpy.random.RandomState
    verbose : int
    stop_on_interrupt : bool, default=False
        On ``KeyboardInterrupt`` after at least one complete epoch, stop,
        warn (:class:`~sklearn_unfold.exceptions.FitInterruptedWarning`) and
        return the result of the last complete epoch. Otherwise the
        interrupt propagates.
    name : str, default="fit_network"
        Who trains, for the messages.

    Returns
    -------
    info : dict
        ``n_iter``, ``converged``, ``interrupted``, ``loss_curve``,
        ``validation_loss_curve`` and ``validation_scores`` (per-label
        accuracy; both empty without a validation split), ``best_loss``,
        ``best_validation_loss`` and ``best_validation_score`` (the accuracy
        of the kept epoch; both None without a validation split).
    """
    rng = random_state
    trainable = list(trainable)
    n = X.shape[0]
    n_val = max(1, int(round(validation_fraction * n))) if early_stopping else 0
    held_out = early_stopping and n - n_val >= 1
    if held_out:
        perm = rng.permutation(n)
        X_val, Y_val = X[perm[:n_val]], Y[perm[:n_val]]
        X, Y = X[perm[n_val:]], Y[perm[n_val:]]
        n = X.shape[0]
    batch_size = int(min(max(batch_size, 1), n))
    optimizer = Adam(params, trainable, learning_rate)
    need_lambda = "lambda" in trainable
    buffers = {}  # the network's work arrays, reused by every mini-batch

    def copy(p):
        return {key: value.copy() for key, value in p.items()}

    # What the last complete epoch left, replaced by one statement per epoch,
    # so that an interrupt sees a whole epoch or none of it.
    done = {
        "params": copy(params),
        "loss_curve": [],
        "validation_loss_curve": [],
        "validation_scores": [],
        "best_loss": np.inf,
        "best_validation_loss": np.inf,
        "best_validation_score": None,
        "best_params": None,
        "converged": False,
    }

    def epochs():
        no_improvement = 0
        start = time.perf_counter()
        for epoch in range(max_iter):
            order = rng.permutation(n) if shuffle else np.arange(n)
            total = 0.0
            for i in range(0, n, batch_size):
                idx = order[i : i + batch_size]
                # Through the module, so that tests can inject faults there.
                loss, grads = loss_and_grad(
                    params, spec, X[idx], Y[idx], l2=l2, need_lambda=need_lambda, buffers=buffers
                )
                optimizer.step(params, grads)
                total += loss * idx.size
            record = {"loss_curve": done["loss_curve"] + [total / n], "params": copy(params)}
            record["best_loss"] = min(done["best_loss"], record["loss_curve"][-1])
            if held_out:
                eta = predict_log_odds(params, spec, X_val)[:, : Y_val.shape[1]]
                val_loss = cross_entropy(eta, Y_val)[0]
                score = float(np.mean((eta > 0) == (Y_val > 0.5)))
                record["validation_loss_curve"] = done["validation_loss_curve"] + [val_loss]
                record["validation_scores"] = done["validation_scores"] + [score]
                improved = val_loss < done["best_validation_loss"] - tol
                if val_loss < done["best_validation_loss"]:
                    record.update(
                        best_validation_loss=val_loss,
                        best_validation_score=score,
                        best_params=record["params"],
                    )
            else:
                improved = record["loss_curve"][-1] < done["best_loss"] - tol
            no_improvement = 0 if improved else no_improvement + 1
            record["converged"] = no_improvement >= n_iter_no_change
            done.update(record)
            if verbose:
                msg = f"Epoch {epoch + 1}, loss = {record['loss_curve'][-1]:.6f}"
                if held_out:
                    msg += (
                        f", validation loss = {done['validation_loss_curve'][-1]:.6f}"
                        f", validation accuracy = {done['validation_scores'][-1]:.4f}"
                    )
                print(msg + f", {time.perf_counter() - start:.1f} s")
            if record["converged"]:
                break

    interrupted = run_interruptible(
        epochs,
        lambda: len(done["loss_curve"]),
        name=name,
        stop_on_interrupt=stop_on_interrupt,
        what="epoch",
    )
    params.update(done["best_params"] if held_out else done["params"])
    return {
        "n_iter": len(done["loss_curve"]),
        "converged": done["converged"],
        "interrupted": interrupted,
        "loss_curve": done["loss_curve"],
        "validation_loss_curve": done["validation_loss_curve"],
        "validation_scores": done["validation_scores"],
        "best_loss": done["best_loss"],
        "best_validation_loss": done["best_validation_loss"] if held_out else None,
        "best_validation_score": done["best_validation_score"] if held_out else None,
    }
