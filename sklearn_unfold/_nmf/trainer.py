"""Multiplicative back-propagation (eq. 38): one trainer for every unfolded-NMF estimator.

Each iteration accumulates ``[grad]_+`` and ``[grad]_-`` of every trained
matrix over all frames (chunk by chunk, so memory is bounded by
``batch_size``) and updates ``W <- W * ([grad]_- / [grad]_+) ** step``; a
block-Hankel layer gets the projected ratio (:func:`~.hankel.hankel_ratio`),
which keeps it exactly block-Hankel, and a frozen layer is left as it is.
The ratio heuristic has no descent guarantee, so every update goes through
the one safeguard of :func:`~.steps.halving_step`.
"""

import time
from dataclasses import dataclass, replace

import numpy as np

from .. import _array_api as aa
from .._fitting import run_interruptible
from .backward import layer_backward, output_backward
from .chunks import frame_chunks, sum_chunk_results
from .divergences import beta_divergence, eps_for
from .hankel import hankel_ratio
from .network import NetworkSpec, trained_forward, wiener_forward
from .steps import halving_step


@dataclass(frozen=True)
class TrainingProblem:
    """The arrays and the objective the trained layers are fitted to.

    Parameters
    ----------
    spec : NetworkSpec
    M_layers : ndarray of shape (n_layer_features, n_frames)
        What the trained update layers see: the mixture's target frames, or
        the context-stacked mixture for context layers.
    M : ndarray of shape (n_frequencies, n_frames)
        The mixture's target frames (the Wiener layer's input).
    sources : list of ndarray of shape (n_frequencies, n_frames)
        Target spectra of each source.
    H_start : ndarray of shape (n_sources * n_components, n_frames)
        Output of the fixed iterations.
    mu : float
        Sparsity at the scale of these arrays.
    weights : tuple of float
        Weight of each source in the objective.
    target_beta : float
        Divergence beta2 of the training objective (eq. 37).
    gamma : float, default=0.0
        Weight of the reconstruction penalty (PAD-NMF).
    """

    spec: NetworkSpec
    M_layers: np.ndarray
    M: np.ndarray
    sources: list
    H_start: np.ndarray
    mu: float
    weights: tuple
    target_beta: float
    gamma: float = 0.0

    @property
    def n_frames(self):
        return self.M.shape[1]

    def frames(self, chunk):
        """The same problem on a slice of frames (a view), or on the frames of an index array (a copy)."""
        if isinstance(chunk, slice):
            def part(A):
                return A[:, chunk]
        else:
            def part(A):
                return aa.take(A, chunk, axis=1)
        return replace(
            self,
            M_layers=part(self.M_layers),
            M=part(self.M),
            sources=[part(S) for S in self.sources],
            H_start=part(self.H_start),
        )


def chunk_loss_and_gradients(problem, W_layers, lowest=0):
    """Objective and gradient parts of the trained matrices on one chunk.

    Parameters
    ----------
    problem : TrainingProblem
        Restricted to the chunk.
    W_layers : list of ndarray
        Update layers bottom to top, then the reconstruction layer ``W^K``.
    lowest : int, default=0
        Index of the lowest layer whose gradient is needed; the backward
        pass stops there (layers below are frozen).

    Returns
    -------
    loss : float
    grads : list of (dWp, dWm) or None, one per entry of ``W_layers``
    """
    spec = problem.spec
    exponent = spec.exponent
    H_top, caches = trained_forward(problem.M_layers, problem.H_start, W_layers, spec.beta, problem.mu, exponent, keep=True)
    loss, dW_out, (Gp, Gm) = output_backward(
        problem.M, problem.sources, W_layers[-1], H_top, spec.source_slices, problem.weights,
        problem.target_beta, problem.gamma,
    )
    grads = [None] * len(W_layers)
    grads[-1] = dW_out
    for i in range(len(caches) - 1, lowest - 1, -1):
        dH, dW = layer_backward(
            problem.M_layers, W_layers[i], caches[i], Gp, Gm, spec.beta, exponent, need_input_grad=i > lowest
        )
        grads[i] = dW
        if dH is not None:
            Gp, Gm = dH
    return loss, grads


def chunk_loss(problem, W_layers):
    """The objective alone on one chunk (forward pass only)."""
    spec = problem.spec
    H_top = trained_forward(problem.M_layers, problem.H_start, W_layers, spec.beta, problem.mu, spec.exponent)
    W_out = W_layers[-1]
    estimates, _, _ = wiener_forward(problem.M, W_out, H_top, spec.source_slices)
    loss = 0.0
    for l, (S_l, S_hat, w) in enumerate(zip(problem.sources, estimates, problem.weights)):
        if w:
            loss += w * beta_divergence(S_l, S_hat, problem.target_beta)
            if problem.gamma:
                sl = spec.source_slices[l]
                diff = S_l - W_out[:, sl] @ H_top[sl, :]
                loss += 0.5 * problem.gamma * w * aa.vdot(diff, diff, aa.get_namespace(diff))
    return loss


def evaluate(problem, W_layers, *, trainable=None, gradients=True, batch_size=None, n_jobs=None):
    """Objective and gradient parts summed over all frames, ``batch_size`` at a time.

    Returns
    -------
    loss : float
    grads : list of (plus, minus) or None, one per layer (None for frozen
        layers), or None when ``gradients`` is False.
    """
    trainable = [True] * len(W_layers) if trainable is None else trainable
    active = [i for i, t in enumerate(trainable) if t]
    lowest = min(active)
    chunks = frame_chunks(problem.n_frames, batch_size)

    def one(chunk):
        sub = problem.frames(chunk)
        if gradients:
            return chunk_loss_and_gradients(sub, W_layers, lowest)
        return chunk_loss(sub, W_layers), None

    shapes = [W.shape if t else None for W, t in zip(W_layers, trainable)] if gradients else None
    return sum_chunk_results(one, chunks, n_jobs, shapes)


def multiplicative_update(W_layers, grads, step, *, trainable, structures, eps):
    """``W <- W * ratio ** step`` on the trainable layers (eq. 38).

    ``ratio = [grad]_- / [grad]_+``, or its block-Hankel projection for a
    layer with a structure, so such a layer stays exactly block-Hankel.
    """
    candidate = list(W_layers)
    for i, (W, grad) in enumerate(zip(W_layers, grads)):
        if not trainable[i]:
            continue
        plus, minus = grad
        xp = aa.get_namespace(plus)
        if structures[i] is None:
            ratio = minus / xp.maximum(plus, aa.scalar(eps, plus, xp))
            # No gradient at all (e.g. every activation underflowed): keep the
            # weight; the ratio 0 / eps would zero it for good.
            if aa.is_numpy(xp):
                ratio[(plus == 0) & (minus == 0)] = 1.0
            else:
                ratio = xp.where((plus == 0) & (minus == 0), aa.scalar(1.0, ratio, xp), ratio)
        else:
            ratio = hankel_ratio(structures[i], plus, minus, eps)
        if step != 1.0:
            ratio **= step
        ratio *= W
        candidate[i] = aa.astype(ratio, W.dtype, xp)
    return candidate


def train_layers(
    problem,
    W_layers,
    *,
    trainable=None,
    structures=None,
    max_iter,
    tol,
    batch_size=None,
    n_jobs=None,
    verbose=0,
    max_halvings=10,
    name="DeepNMF",
    stop_on_interrupt=False,
    validation=None,
    n_iter_no_change=10,
):
    """Train ``W_layers`` by multiplicative back-propagation (eq. 38).

    An update is accepted only if the objective did not increase; otherwise
    the exponent ``step`` is halved and the update retried from the same
    point (:func:`~.steps.halving_step`); ``step`` then grows back by a
    factor 2 per accepted update, up to 1. The recorded objective is
    therefore non-increasing. Stops after ``max_iter`` accepted updates,
    when one lowers the objective by at most ``tol`` times its value, or
    when no step helps any more.

    With a ``validation`` problem (early stopping), the held-out objective is
    evaluated after every accepted update (a forward pass); training stops
    when it has not fallen below ``(1 - tol)`` times its best value for
    ``n_iter_no_change`` updates in a row, and the layers with the best
    held-out objective are returned. ``tol`` then no longer applies to the
    training objective.

    Parameters
    ----------
    problem : TrainingProblem
    W_layers : list of ndarray
        Starting layers: update layers bottom to top, then ``W^K``.
    trainable : list of bool, default=None
        Which layers are trained (None: all).
    structures : list of BlockHankel or None, default=None
        Structure kept exactly in each layer (None: none).
    stop_on_interrupt : bool, default=False
        On ``KeyboardInterrupt``, warn (:class:`FitInterruptedWarning`) and
        return the layers of the last accepted update instead of
        propagating it. Layers are only ever replaced as a whole, so the
        result is never a half-applied update.
    validation : TrainingProblem, default=None
        Held-out frames for early stopping (None: no early stopping).
    n_iter_no_change : int, default=10
        Updates without improvement of the held-out objective before
        stopping (early stopping only).

    Returns
    -------
    W_layers : list of ndarray
    n_iter : int
        Number of accepted updates.
    loss_curve : list of float
        Objective per frame at the start and after each accepted update.
    interrupted : bool
        Whether Ctrl-C ended the training.
    validation_curve : list of float or None
        Held-out objective per frame at the start and after each accepted
        update (None without ``validation``).
    best_iter : int
        Number of updates that produced the returned layers (the best
        held-out objective; ``n_iter`` without ``validation``).
    """
    n_layers = len(W_layers)
    trainable = [True] * n_layers if trainable is None else list(trainable)
    structures = [None] * n_layers if structures is None else list(structures)
    n_frames = problem.n_frames
    eps = eps_for(problem.M.dtype)
    setup = dict(trainable=trainable, batch_size=batch_size, n_jobs=n_jobs)
    # The returned layers: the last accepted ones, or the best on held-out frames.
    result = {"W_layers": W_layers, "loss_curve": [], "validation_curve": None, "best_iter": 0}

    def held_out(layers):
        loss, _ = evaluate(validation, layers, gradients=False, **setup)
        return float(loss) / validation.n_frames

    def loop():
        start = time.perf_counter()
        layers = W_layers
        loss, grads = evaluate(problem, layers, **setup)
        result["loss_curve"] = loss_curve = [float(loss) / n_frames]
        if validation is not None:
            best = held_out(layers)
            result["validation_curve"] = [best]
            n_worse = 0
        step = 1.0
        for _ in range(max_iter):

            def propose(step):
                candidate = multiplicative_update(layers, grads, step, trainable=trainable, structures=structures, eps=eps)
                new_loss, new_grads = evaluate(problem, candidate, **setup)
                return (candidate, new_loss, new_grads), new_loss

            accepted, _, used = halving_step(propose, loss, step=step, max_halvings=max_halvings)
            if accepted is None:
                if verbose:
                    print(f"{name}: no step size decreases the objective any more; stopping.")
                break
            previous = loss
            layers, loss, grads = accepted
            step = min(1.0, 2.0 * used)
            n_done = len(loss_curve)
            if validation is None:
                # One statement: an interrupt sees the old or the new pair, never a mix.
                result.update(W_layers=layers, loss_curve=loss_curve + [float(loss) / n_frames], best_iter=n_done)
            else:
                current = held_out(layers)
                improved = current < best * (1.0 - tol) if tol > 0 else current < best
                update = dict(
                    loss_curve=loss_curve + [float(loss) / n_frames],
                    validation_curve=result["validation_curve"] + [current],
                )
                if current < best:
                    update.update(W_layers=layers, best_iter=n_done)
                    best = current
                n_worse = 0 if improved else n_worse + 1
                result.update(update)
            loss_curve = result["loss_curve"]
            if verbose:
                held = "" if validation is None else f", held-out {result['validation_curve'][-1]:.6g}"
                print(
                    f"{name} iteration {len(loss_curve) - 1:4d}: objective {loss / n_frames:.6g} per frame{held} "
                    f"({time.perf_counter() - start:.2f} s)"
                )
            if validation is not None:
                if n_worse >= n_iter_no_change:
                    if verbose:
                        print(f"{name}: held-out objective not improved for {n_iter_no_change} updates; stopping.")
                    break
            elif tol > 0 and previous - loss <= tol * abs(loss):
                break

    interrupted = run_interruptible(
        loop, lambda: len(result["loss_curve"]) - 1, name=name, stop_on_interrupt=stop_on_interrupt
    )
    loss_curve = result["loss_curve"]
    return (
        result["W_layers"], max(len(loss_curve) - 1, 0), loss_curve, interrupted,
        result["validation_curve"], result["best_iter"],
    )


def train_step(
    problem, W_layers, *, trainable=None, structures=None, step=1.0, batch_size=None, n_jobs=None, max_halvings=10
):
    """One safeguarded multiplicative back-propagation update on a mini-batch.

    The gradient parts of the batch's frames give ``W <- W * ratio ** step``;
    while the batch's objective increases, ``step`` is halved and the update
    retried (:func:`~.steps.halving_step`; then the layers are left
    unchanged).

    Returns
    -------
    W_layers : list of ndarray
        The updated layers (the given ones when no step helped).
    loss_before, loss_after : float
        The batch's objective per frame before and after.
    step : float
        The exponent accepted, or 0.0 when no step decreased the objective.
    """
    n_layers = len(W_layers)
    trainable = [True] * n_layers if trainable is None else list(trainable)
    structures = [None] * n_layers if structures is None else list(structures)
    eps = eps_for(problem.M.dtype)
    setup = dict(trainable=trainable, batch_size=batch_size, n_jobs=n_jobs)
    loss, grads = evaluate(problem, W_layers, **setup)

    def propose(step):
        candidate = multiplicative_update(W_layers, grads, step, trainable=trainable, structures=structures, eps=eps)
        return candidate, evaluate(problem, candidate, gradients=False, **setup)[0]

    candidate, new_loss, used = halving_step(propose, loss, step=step, max_halvings=max_halvings)
    n_frames = problem.n_frames
    if candidate is None:
        return W_layers, float(loss) / n_frames, float(loss) / n_frames, 0.0
    return candidate, float(loss) / n_frames, float(new_loss) / n_frames, used
