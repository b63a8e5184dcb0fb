"""Training-epoch and inference speed of DeepNMF on the paper's topology.

K = 25 layers, C = 2 trained layers, R = 2 x 100 bases, T = 9 frames of context, F = 129, 10 000 frames,
float32, random non-negative data (speed does not depend on the values), laid out as ``DeepNMF`` lays it
out: X one context-stacked frame per row, the fixed bases a transposed view of the C-ordered ``bases_``
(what ``fit`` and ``predict`` pass on), the trained layers C-ordered copies of the bases' last frame.

Contenders:

- ``ours``: this project's training epoch, through the functions ``DeepNMF.fit`` runs (the training problem
  built as ``fit`` builds it, fixed layers computed once; per epoch the multiplicative update and the
  objective with the positive / negative gradient parts of every trained matrix), and one inference pass,
  ``run_network`` as ``predict`` runs it (all K layers + Wiener filter);
- ``products``: the inference pass's matrix products alone, same shapes and layouts;
- ``ceiling``: a plain float32 matrix product of the fixed layers' shapes, (T F x R) @ (R x N);
- ``torch``: the same network trained with PyTorch autograd, when torch is installed (skipped otherwise), in
  two variants: a direct port that runs all K layers under autograd every epoch, and one that caches the
  fixed layers like this project does;
- ``race_ours`` / ``race_adam``: whole training to the same loss, ``train_layers`` (what ``fit`` runs) for
  20 multiplicative updates, then torch autograd + Adam from the same start (fixed layers cached, clamped at
  0) at several learning rates until the objective reaches ours; the target loss is passed to the Adam run.

Every timing reads both clocks around the same runs: CPU time of the process (``time.process_time``, all its
threads; what this process used, the others' load on a shared machine does not count) and wall time
(``time.perf_counter``); each is the minimum over ``--repeat`` runs (the races run once). JSON keys without
``wall`` are CPU seconds, their ``*_wall_seconds`` twins wall seconds.

``--fresh`` (the default for full runs) runs every contender in its own new Python process
(``python bench_training.py --contender NAME ...``, printing JSON on stdout), one after the other: the data is
regenerated from the same seed in each, every child gets the same thread pinning (``--threads`` through
threadpoolctl and ``torch.set_num_threads``, and OMP / OPENBLAS / MKL_NUM_THREADS in its environment), so
that no contender warms caches, the allocator or thread pools for another; the times are those a user
running each alone would see. ``--quick`` (1 000 frames, K = 5, best of two; what CI runs) stays in one
process unless ``--fresh`` is given. The load average before and after, and ``OPENBLAS_CORETYPE`` as found
in the environment, are printed and recorded.

With ``--device DEVICE`` (``cpu``, ``cuda``, ``cuda:1``...), in this process after the rest: the same epoch
and inference, through the same functions, on torch tensors on that device under scikit-learn's
``array_api_dispatch`` (wall-clock times, the device synchronized before each clock reading), next to the
numpy ones.

Inference throughput counts the matrix-product flops of the network (4 T F R N per fixed layer,
4 F R N per trained layer, 2 F R N for the output) divided by the time of a whole pass.

    python benchmarks/bench_training.py [--quick] [--fresh | --no-fresh] [--json PATH] [--repeat N]
                                        [--threads N] [--device DEVICE]
"""

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np

from sklearn import config_context

from sklearn_unfold._nmf import layout
from sklearn_unfold._nmf.divergences import eps_for
from sklearn_unfold._nmf.network import NetworkSpec, fixed_part, run_network
from sklearn_unfold._nmf.scaling import safe_scale
from sklearn_unfold._nmf.trainer import TrainingProblem, evaluate, multiplicative_update, train_layers

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)


class Timing(NamedTuple):
    """CPU and wall seconds of the same run(s)."""

    cpu: float
    wall: float


class Stopwatch:
    """Both clocks from one start; ``elapsed()`` is a :class:`Timing`."""

    def __init__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def elapsed(self):
        wall = time.perf_counter() - self.wall
        return Timing(time.process_time() - self.cpu, wall)


def best_time(func, repeat, sync=None):
    """CPU and wall time of ``func``, each the minimum over ``repeat`` runs (both clocks read around
    every run). CPU time is what this process used (all its threads); wall time also counts waiting,
    e.g. for the others' load on a shared machine.

    ``sync`` (e.g. ``torch.cuda.synchronize``) times work queued on an accelerator: the clocks are
    read after the device finished.
    """
    times = []
    for _ in range(repeat):
        if sync:
            sync()
        watch = Stopwatch()
        func()
        if sync:
            sync()
        times.append(watch.elapsed())
    return Timing(min(t.cpu for t in times), min(t.wall for t in times))


def topology(quick):
    """K, C, R, T, F, N."""
    return (5, 2, 100, 9, 129, 1000) if quick else (25, 2, 100, 9, 129, 10000)


def make_problem(K, C, R, T, F, N, seed=0):
    """X and y laid out as DeepNMF reads them (one context-stacked frame per row, float32).

    The two sources split every value of the mixture at random, so they sum to it. Returns X, y,
    the speech target frames (F, N), the fixed bases (T F, 2 R) as ``fit`` and ``predict`` pass them
    (``bases_.T``, a view of the C-ordered (2 R, T F) bases) and the C trained layers as ``fit``
    starts them (C-ordered copies of the bases' last frame). Deterministic: every process that calls
    it with the same arguments gets the same arrays.
    """
    rng = np.random.default_rng(seed)
    dtype = np.float32
    X = rng.gamma(1.0, 1.0, (N, T * F)).astype(dtype)
    share = rng.uniform(0, 1, (N, T * F)).astype(dtype)
    y = np.hstack([X * share, X * (1 - share)])
    speech = np.ascontiguousarray(y[:, T * F - F : T * F].T)
    W = rng.uniform(0.1, 1.0, (T * F, 2 * R)).astype(dtype)
    W /= np.linalg.norm(W, axis=0)
    bases = np.ascontiguousarray(W.T)
    layers = [np.ascontiguousarray(bases[:, -F:].T) for _ in range(C)]
    return X, y, speech, bases.T, layers


@functools.lru_cache(maxsize=2)
def problem_for(quick):
    """The topology and :func:`make_problem`'s arrays (shared by the contenders of one process)."""
    K, C, R, T, F, N = topology(quick)
    return (K, C, R, T, F, N), make_problem(K, C, R, T, F, N)


def network_spec(K, C, R, T, F):
    return NetworkSpec(n_layers=K, n_trained=C, n_context=T, n_frequencies=F, n_components=R, n_sources=2,
                       beta=1.0, sparsity=1.0)


def training_problem(spec, X, y, W_fixed, batch_size):
    """The training problem as ``DeepNMF._training_problem`` builds it (default source weights (1, 0))."""
    T, F = spec.n_context, spec.n_frequencies
    scale = safe_scale(X)
    M = layout.mixture_targets(X, F, contiguous=True)
    sources = layout.source_targets(y, T * F, F, 2, contiguous=True)
    if scale != 1.0:
        M, sources = M / scale, [S / scale for S in sources]
    return TrainingProblem(
        spec=spec, M_layers=M, M=M, sources=sources,
        H_start=fixed_part(spec, W_fixed, X, scale=scale, batch_size=batch_size),
        mu=spec.mu(scale, X.dtype), weights=(1.0, 0.0), target_beta=2.0,
    )


def ours(K, C, R, T, F, X, y, W_fixed, layers, batch_size, repeat, sync=None):
    """One training epoch and one inference pass, through the estimators' own functions.

    The epoch is what ``train_layers`` does per accepted update: the
    multiplicative update (eq. 38) and the objective with the gradient parts
    of every trained matrix summed over all frames (``evaluate``); the
    training problem is built as ``DeepNMF.fit`` builds it (``fixed_part``
    once, target frames as contiguous copies of X and y). Inference is
    ``run_network``, what ``predict`` runs (all K layers and the Wiener
    filter). Returns two :class:`Timing`.
    """
    spec = network_spec(K, C, R, T, F)
    problem = training_problem(spec, X, y, W_fixed, batch_size)
    trainable, structures, eps = [True] * C, [None] * C, eps_for(X.dtype)
    _, grads = evaluate(problem, layers, batch_size=batch_size)

    def epoch():
        candidate = multiplicative_update(layers, grads, 1.0, trainable=trainable, structures=structures, eps=eps)
        return evaluate(problem, candidate, trainable=trainable, batch_size=batch_size)

    def inference():
        return run_network(spec, W_fixed, layers, X, output="sources", batch_size=batch_size)

    return best_time(epoch, repeat, sync=sync), best_time(inference, repeat, sync=sync)


def on_device(device, K, C, R, T, F, X, y, W_fixed, layers, batch_size, repeat):
    """:func:`ours` on torch tensors on ``device``: epoch and inference :class:`Timing`."""
    import torch

    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def moved(a):
        return torch.asarray(np.ascontiguousarray(a), device=device)

    with config_context(array_api_dispatch=True):
        return ours(K, C, R, T, F, moved(X), moved(y), moved(W_fixed), [moved(W) for W in layers], batch_size,
                    repeat, sync=sync)


def products_only(K, C, R, T, F, X, W_fixed, layers, batch_size, repeat):
    """The inference pass's matrix products alone, same shapes, same layouts (C-ordered activations).

    Per chunk: the fixed layers' ``W H`` and ``W^T V`` on (T F, n), the trained
    update layers' on (F, n) and the output's ``W H``, with no element-wise
    work: the time ``predict`` would take if everything else were free.
    """
    rng = np.random.default_rng(2)
    chunks = [slice(s, min(s + batch_size, X.shape[0])) for s in range(0, X.shape[0], batch_size)]
    H_all = rng.random((W_fixed.shape[1], batch_size), dtype=np.float32)
    V_all = rng.random((T * F, batch_size), dtype=np.float32)

    def run():
        for chunk in chunks:
            n = chunk.stop - chunk.start
            H, V = H_all[:, :n], V_all[:, :n]
            for _ in range(K - C + 1):
                W_fixed @ H
                W_fixed.T @ V
            for W in layers[:-1]:
                W @ H
                W.T @ V[:F]
            layers[-1] @ H

    return best_time(run, repeat)


def epoch_products_only(C, R, F, N, batch_size, repeat):
    """A training epoch's matrix products alone: the lower bound of the split-gradient epoch.

    Per chunk of ``batch_size`` frames, the products ``evaluate`` runs (beta = 1, two sources of
    ``R`` bases): each of the ``C - 1`` update layers' forward ``W H`` and ``W^T (M / Lam)``; the
    Wiener layer's two per-source models; its backward ``W_j^T`` times the + and - parts and
    the parts times ``H_j^T`` per source (8 half-width products); each update layer's backward
    ``(M / Lam) (G a)^T``, ``W (G a)`` and ``U H^T`` for both gradient parts, ``W^T U`` for both
    where the layer below is trained too, and the one grouped diagonal product. With C = 2 that is
    14 products of (F x 2R x n), torch autograd's cached epoch needs 8 (its forward and one
    gradient per product). Everything else free, this is the fastest the epoch could run.
    """
    rng = np.random.default_rng(3)
    n = min(batch_size, N)
    FN = rng.random((F, n), dtype=np.float32)
    RN = rng.random((2 * R, n), dtype=np.float32)
    W = rng.random((F, 2 * R), dtype=np.float32)
    n_chunks, last = divmod(N, n)
    sizes = [n] * n_chunks + ([last] if last else [])

    def chunk(m):
        M, H = FN[:, :m], RN[:, :m]
        for i in range(C - 1):  # forward of the update layers
            W @ H
            W.T @ M
        for sl in (slice(0, R), slice(R, 2 * R)):  # Wiener models, then its backward
            W[:, sl] @ H[sl]
        for sl in (slice(0, R), slice(R, 2 * R)):
            for _ in range(2):
                W[:, sl].T @ M
                M @ H[sl].T
        for i in range(C - 1):  # update layers' backward, top to bottom
            for _ in range(2):
                M @ H.T
                U = W @ H
                U @ H.T
                if i < C - 2:
                    W.T @ U
            M @ H.T

    return best_time(lambda: [chunk(m) for m in sizes], repeat)


def matmul_ceiling(R, T, F, N, repeat):
    """:class:`Timing` of one (T F x 2 R) @ (2 R x N) float32 product, and its flop count."""
    rng = np.random.default_rng(1)
    A = rng.random((T * F, 2 * R), dtype=np.float32)
    B = rng.random((2 * R, N), dtype=np.float32)
    return best_time(lambda: A @ B, repeat), 2.0 * A.shape[0] * A.shape[1] * B.shape[1]


def torch_epochs(K, C, R, F, N, M_ctx, speech, W_fixed, layers, repeat, threads=None):
    """Autograd epochs: all K layers every epoch, and from the cached fixed layers (two :class:`Timing`)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    M_ctx_t = torch.from_numpy(M_ctx)
    M_t = M_ctx_t[-F:]
    S_t = torch.from_numpy(speech)
    Wf = torch.from_numpy(np.ascontiguousarray(W_fixed))
    params = [torch.from_numpy(W.copy()).requires_grad_(True) for W in layers]
    mu, eps = 1.0, 1e-10

    def step(M, W, H):
        Lam = torch.clamp(W @ H, min=eps)
        return H * (W.T @ (M / Lam)) / (W.sum(0)[:, None] + mu)

    def start_H():
        return (M_ctx_t.sum(0) / Wf.sum()).expand(2 * R, N).clone()

    def forward_from(H):
        for W in params[:-1]:
            H = step(M_t, W, H)
        W_out = params[-1]
        speech = W_out[:, :R] @ H[:R]
        total = torch.clamp(speech + W_out[:, R:] @ H[R:], min=eps)
        return 0.5 * ((S_t - M_t * speech / total) ** 2).sum()

    def fixed():
        H = start_H()
        for _ in range(K - C + 1):
            H = step(M_ctx_t, Wf, H)
        return H

    def epoch_full():
        loss = forward_from(fixed())
        loss.backward()
        with torch.no_grad():
            for W in params:
                W.sub_(1e-6 * W.grad)
                W.grad = None

    with torch.no_grad():
        H_cached = fixed()

    def epoch_cached():
        loss = forward_from(H_cached)
        loss.backward()
        with torch.no_grad():
            for W in params:
                W.sub_(1e-6 * W.grad)
                W.grad = None

    return best_time(epoch_full, repeat), best_time(epoch_cached, repeat), torch.__version__


def race_ours(K, C, R, T, F, X, y, W_fixed, layers, batch_size, n_updates):
    """Ours in the race to the loss: ``train_layers`` (what ``DeepNMF.fit`` runs) for ``n_updates``
    accepted updates from the starting layers; its final objective is the target. The training
    problem (fixed layers) is timed apart."""
    spec = network_spec(K, C, R, T, F)
    watch = Stopwatch()
    problem = training_problem(spec, X, y, W_fixed, batch_size)
    fixed_seconds = watch.elapsed()
    watch = Stopwatch()
    _, n_iter, curve, *_ = train_layers(problem, [W.copy() for W in layers], max_iter=n_updates, tol=0.0,
                                       batch_size=batch_size)
    return {"n_updates": int(n_iter), "target_loss_per_frame": float(curve[-1]), "time_to_loss": watch.elapsed(),
            "fixed_layers": fixed_seconds}


def race_adam(K, C, R, T, F, X, y, W_fixed, layers, batch_size, target_per_frame, lrs, max_epochs, threads=None):
    """Torch in the race: the same network and objective (fixed layers cached, computed as ``fit`` does),
    Adam from the same start, non-negativity kept by clamping at 0 after each step, for every learning
    rate of ``lrs``, until the objective reaches ``target_per_frame`` times the frames (at most
    ``max_epochs`` epochs). ``{lr: (cpu seconds, wall seconds, epochs) or None}``."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    problem = training_problem(network_spec(K, C, R, T, F), X, y, W_fixed, batch_size)
    target = target_per_frame * X.shape[0]
    M_t, S_t = torch.from_numpy(problem.M), torch.from_numpy(problem.sources[0])
    H_cached = torch.from_numpy(np.ascontiguousarray(problem.H_start))
    mu, eps = problem.mu, 1e-10

    def loss_of(params):
        H = H_cached
        for W in params[:-1]:
            Lam = torch.clamp(W @ H, min=eps)
            H = H * (W.T @ (M_t / Lam)) / (W.sum(0)[:, None] + mu)
        W_out = params[-1]
        speech = W_out[:, :R] @ H[:R]
        total = torch.clamp(speech + W_out[:, R:] @ H[R:], min=eps)
        return 0.5 * ((S_t - M_t * speech / total) ** 2).sum()

    adam = {}
    for lr in lrs:
        params = [torch.from_numpy(W.copy()).requires_grad_(True) for W in layers]
        optimizer = torch.optim.Adam(params, lr=lr)
        watch = Stopwatch()
        reached = None
        for epoch in range(1, max_epochs + 1):
            optimizer.zero_grad()
            loss = loss_of(params)
            if loss.detach().item() <= target:
                cpu, wall = watch.elapsed()
                reached = (cpu, wall, epoch - 1)
                break
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for W in params:
                    W.clamp_(min=0)
        adam[lr] = reached
    return adam


# ------------------------------------------------------------------ contenders
def contender(name, quick, repeat, batch_size, threads, target_loss=None):
    """Run one contender in this process; a JSON-able dict."""
    (K, C, R, T, F, N), (X, y, speech, W_fixed, layers) = problem_for(quick)
    if name == "ours":
        epoch, inference = ours(K, C, R, T, F, X, y, W_fixed, layers, batch_size, repeat)
        return {"epoch": epoch, "inference": inference}
    if name == "products":
        return {"products_only": products_only(K, C, R, T, F, X, W_fixed, layers, batch_size, repeat),
                "epoch_products_only": epoch_products_only(C, R, F, N, batch_size, repeat)}
    if name == "ceiling":
        timing, flop = matmul_ceiling(R, T, F, N, repeat)
        return {"matmul": timing, "flop": flop}
    if name == "torch":
        full, cached, version = torch_epochs(K, C, R, F, N, np.ascontiguousarray(X.T), speech, W_fixed, layers,
                                             repeat, threads)
        return {"full": full, "cached": cached, "torch_version": version}
    if name == "race_ours":
        return race_ours(K, C, R, T, F, X, y, W_fixed, layers, batch_size, n_updates=5 if quick else 20)
    if name == "race_adam":
        adam = race_adam(K, C, R, T, F, X, y, W_fixed, layers, batch_size, target_loss, LEARNING_RATES,
                         max_epochs=100 if quick else 400, threads=threads)
        return {"adam": {str(lr): r for lr, r in adam.items()}}
    raise ValueError(f"unknown contender {name!r}")


def pin_threads(threads):
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)


def thread_pools():
    """The BLAS / OpenMP pools this process has loaded and their sizes (to see the pinning)."""
    from threadpoolctl import threadpool_info

    pools = [f"{p['internal_api']}:{p['num_threads']}" for p in threadpool_info()]
    if sys.modules.get("torch") is not None:
        pools.append(f"torch:{sys.modules['torch'].get_num_threads()}")
    return pools


def child_env(threads):
    """The environment of every child: the parent's, with the thread variables set to ``threads``."""
    env = dict(os.environ)
    if threads:
        env.update({name: str(threads) for name in THREAD_VARIABLES})
    return env


def run_child(name, args, target_loss=None):
    """``contender(name, ...)`` in a fresh Python process; its JSON result."""
    command = [sys.executable, os.path.abspath(__file__), "--contender", name, "--repeat", str(args.repeat),
               "--batch-size", str(args.batch_size)]
    if args.quick:
        command.append("--quick")
    if args.threads:
        command += ["--threads", str(args.threads)]
    if target_loss is not None:
        command += ["--target-loss", repr(float(target_loss))]
    done = subprocess.run(command, env=child_env(args.threads), stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"contender {name} failed (exit status {done.returncode}): {' '.join(command)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def collect(args, has_torch):
    """Every contender's result, each in a fresh process (``args.fresh``) or all in this one."""
    def run(name, target_loss=None):
        if args.fresh:
            return run_child(name, args, target_loss)
        out = contender(name, args.quick, args.repeat, args.batch_size, args.threads, target_loss)
        return json.loads(json.dumps(out))  # the same lists and string keys a child returns

    results = {name: run(name) for name in ("ours", "products", "ceiling")}
    results["load_average"] = list(os.getloadavg())
    if has_torch:
        results["torch"] = run("torch")
    results["race_ours"] = run("race_ours")
    if has_torch:
        results["race_adam"] = run("race_adam", results["race_ours"]["target_loss_per_frame"])
    return results


# ------------------------------------------------------------------ report
def ms(seconds):
    return f"{seconds * 1e3:10.1f}"


def report(args, results, shape):
    """The printed table and the JSON dict (CPU keys as before, ``*_wall_*`` twins)."""
    K, C, R, T, F, N = shape
    epoch, infer = (Timing(*results["ours"][key]) for key in ("epoch", "inference"))
    gemm = Timing(*results["products"]["products_only"])
    epoch_gemm = Timing(*results["products"]["epoch_products_only"])
    matmul, matmul_flop = Timing(*results["ceiling"]["matmul"]), results["ceiling"]["flop"]
    flops = (K - C + 1) * 4 * T * F * 2 * R * N + (C - 1) * 4 * F * 2 * R * N + 2 * F * 2 * R * N
    ceiling = Timing(matmul_flop / matmul.cpu, matmul_flop / matmul.wall)
    result = {"K": K, "C": C, "R_total": 2 * R, "T": T, "F": F, "n_frames": N, "dtype": "float32",
              "threads": args.threads, "fresh_processes": args.fresh,
              "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
              "epoch_seconds": epoch.cpu, "epoch_wall_seconds": epoch.wall,
              "inference_seconds": infer.cpu, "inference_wall_seconds": infer.wall,
              "inference_gflops": flops / infer.cpu / 1e9, "inference_wall_gflops": flops / infer.wall / 1e9,
              "matmul_gflops": ceiling.cpu / 1e9, "matmul_wall_gflops": ceiling.wall / 1e9,
              "products_only_seconds": gemm.cpu, "products_only_wall_seconds": gemm.wall,
              "inference_gemm_ratio": gemm.cpu / infer.cpu, "inference_gemm_wall_ratio": gemm.wall / infer.wall,
              "epoch_products_only_seconds": epoch_gemm.cpu, "epoch_products_only_wall_seconds": epoch_gemm.wall,
              "load_average": results["load_average"],
              "load_average_before": results["load_average_before"],
              "load_average_after": results["load_average_after"],
              "thread_pools": {name: r["thread_pools"] for name, r in results.items()
                               if isinstance(r, dict) and "thread_pools" in r}}
    mode = (f"fresh Python process per contender ({os.path.basename(sys.executable)} {os.path.basename(__file__)} "
            "--contender NAME)" if args.fresh else "all contenders in this process")
    print(f"topology: K={K}, C={C}, R=2x{R}, T={T}, F={F}, {N} frames, float32, threads={args.threads or 'default'}")
    print(f"{mode}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}; "
          f"load average before {' '.join(f'{x:.2f}' for x in results['load_average_before'])}")
    print(f"{'':52}{'CPU ms':>10} {'wall ms':>10}")

    def row(label, t, note=""):
        print(f"{label:<52}{ms(t.cpu)} {ms(t.wall)}  {note}".rstrip())

    row("sklearn_unfold epoch", epoch)
    row("epoch's matrix products only (its lower bound)", epoch_gemm,
        f"{epoch_gemm.cpu / epoch.cpu:.2f} of the epoch (CPU)")
    row("sklearn_unfold inference", infer,
        f"{result['inference_gflops']:.1f} GFLOP/s of matrix products (CPU), {result['inference_wall_gflops']:.1f} (wall)")
    row("products only (inference's matrix products)", gemm,
        f"inference_gemm_ratio {gemm.cpu / infer.cpu:.2f} (CPU), {gemm.wall / infer.wall:.2f} (wall)")
    row("matmul ceiling, one (T F x 2R) @ (2R x N)", matmul,
        f"{ceiling.cpu / 1e9:.1f} GFLOP/s (CPU), {ceiling.wall / 1e9:.1f} (wall) -> inference at "
        f"{result['inference_gflops'] * 1e9 / ceiling.cpu:.2f} of it (CPU)")
    if "torch" not in results:
        print("torch not installed: PyTorch autograd comparison and Adam race skipped")
    else:
        t = results["torch"]
        full, cached, version = Timing(*t["full"]), Timing(*t["cached"]), t["torch_version"]
        result.update(torch_version=version, torch_epoch_full_seconds=full.cpu,
                      torch_epoch_full_wall_seconds=full.wall, torch_epoch_cached_seconds=cached.cpu,
                      torch_epoch_cached_wall_seconds=cached.wall,
                      torch_epoch_cached_ratio=cached.cpu / epoch.cpu,
                      torch_epoch_cached_wall_ratio=cached.wall / epoch.wall)
        row(f"torch {version} autograd, all K layers every epoch", full,
            f"-> sklearn_unfold is {full.cpu / epoch.cpu:.1f}x faster (CPU), {full.wall / epoch.wall:.1f}x (wall)")
        row(f"torch {version} autograd, fixed layers cached", cached,
            f"-> torch_epoch_cached / epoch = {cached.cpu / epoch.cpu:.2f} (CPU), {cached.wall / epoch.wall:.2f} (wall)")
        result.update(torch_epoch_cached_products_bound_ratio=cached.cpu / epoch_gemm.cpu)
        print(f"{'':52}{'':21}  torch_epoch_cached / epoch's products alone = {cached.cpu / epoch_gemm.cpu:.2f} "
              "(the most any epoch with this split could reach)")
    race = results["race_ours"]
    ttl, fixed = Timing(*race["time_to_loss"]), Timing(*race["fixed_layers"])
    result.update(time_to_loss_seconds=ttl.cpu, time_to_loss_wall_seconds=ttl.wall,
                  time_to_loss_n_updates=race["n_updates"],
                  fixed_layers_seconds=fixed.cpu, fixed_layers_wall_seconds=fixed.wall,
                  target_loss_per_frame=race["target_loss_per_frame"])
    print(f"to the loss of {race['n_updates']} MU updates ({race['target_loss_per_frame']:.6g} per frame), "
          f"fixed layers apart ({fixed.cpu:.2f} s CPU):{'CPU s':>9} {'wall s':>10}")
    print(f"  {'sklearn_unfold':<50}{ttl.cpu:10.2f} {ttl.wall:10.2f}")
    if "race_adam" in results:
        adam = results["race_adam"]["adam"]
        reached = {lr: r for lr, r in adam.items() if r is not None}
        best = min(reached.items(), key=lambda item: item[1][0]) if reached else None
        result.update(torch_adam_time_to_loss_seconds=best[1][0] if best else None,
                      torch_adam_time_to_loss_wall_seconds=best[1][1] if best else None,
                      torch_adam_best_lr=float(best[0]) if best else None,
                      torch_adam_epochs_to_loss=best[1][2] if best else None,
                      torch_adam_by_lr={lr: None if r is None else [r[0], r[2]] for lr, r in adam.items()},
                      torch_adam_wall_by_lr={lr: None if r is None else r[1] for lr, r in adam.items()})
        for lr, r in adam.items():
            label = f"torch Adam lr={float(lr):g}"
            print(f"  {label:<50}{r[0]:10.2f} {r[1]:10.2f}  ({r[2]} epochs)" if r else f"  {label:<50}not reached")
        if best:
            print(f"  -> best Adam time / sklearn_unfold time = {best[1][0] / ttl.cpu:.2f} (CPU), "
                  f"{best[1][1] / ttl.wall:.2f} (wall); above 1: MU gets there sooner")
    print(f"load average after {' '.join(f'{x:.2f}' for x in results['load_average_after'])}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 000 frames, K = 5, best of two runs")
    parser.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=None,
                        help="run every contender in its own fresh Python process (default: yes for full runs, "
                             "no with --quick)")
    parser.add_argument("--json", help="write the measurements as JSON here")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024, help="frames per chunk (DeepNMF's default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS / torch threads for every contender (and OMP / OPENBLAS / MKL_NUM_THREADS "
                             "of every fresh process)")
    parser.add_argument("--device", default=None,
                        help="also run the same network on torch tensors on this device (cpu, cuda, ...) "
                             "under array_api_dispatch")
    parser.add_argument("--contender", help=argparse.SUPPRESS)  # internal: one contender, JSON on stdout
    parser.add_argument("--target-loss", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 2
    if args.contender:
        pin_threads(args.threads)
        out = contender(args.contender, args.quick, args.repeat, args.batch_size, args.threads, args.target_loss)
        out["thread_pools"] = thread_pools()
        print(json.dumps(out))
        return out
    if args.fresh is None:
        args.fresh = not args.quick
    if args.device:
        # scikit-learn checks it when dispatch is switched on (scipy is not used on the device here).
        os.environ.setdefault("SCIPY_ARRAY_API", "1")
        try:
            import torch
        except ImportError:
            parser.error("--device needs torch")
        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            torch.empty(1, device=args.device)
        except (RuntimeError, AssertionError) as error:
            parser.error(f"--device {args.device}: {error}")
    if not args.fresh:
        pin_threads(args.threads)
    try:
        has_torch = importlib.util.find_spec("torch") is not None
    except ImportError:
        has_torch = False
    load_before = list(os.getloadavg())
    results = collect(args, has_torch)
    results["load_average_before"], results["load_average_after"] = load_before, list(os.getloadavg())
    shape = topology(args.quick)
    result = report(args, results, shape)
    if args.device:
        if args.fresh:
            pin_threads(args.threads)
        K, C, R, T, F, N = shape
        X, y, speech, W_fixed, layers = problem_for(args.quick)[1]
        np_epoch, np_infer = ours(K, C, R, T, F, X, y, W_fixed, layers, args.batch_size, args.repeat)
        dev_epoch, dev_infer = on_device(args.device, K, C, R, T, F, X, y, W_fixed, layers, args.batch_size,
                                         args.repeat)
        result.update(device=args.device, numpy_epoch_wall_seconds=np_epoch.wall,
                      numpy_inference_wall_seconds=np_infer.wall, device_epoch_seconds=dev_epoch.wall,
                      device_inference_seconds=dev_infer.wall)
        print(f"wall clock       numpy epoch {np_epoch.wall * 1e3:9.1f} ms   inference {np_infer.wall * 1e3:9.1f} ms "
              "(in this process)")
        print(f"torch on {args.device:<7} epoch {dev_epoch.wall * 1e3:9.1f} ms   inference {dev_infer.wall * 1e3:9.1f} ms "
              f"(array_api_dispatch, wall clock)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
