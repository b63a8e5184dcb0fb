"""Training-epoch and inference speed of DeepNMF on the paper's topology.

K = 25 layers, C = 2 trained layers, R = 2 x 100 bases, T = 9 frames of context, F = 129, 10 000 frames,
float32, random non-negative data (speed does not depend on the values). Measures in one run:

- this project: one training epoch (forward through the trained layers from the cached fixed part,
  positive / negative gradient parts of every trained matrix, multiplicative update) and one inference
  pass (all K layers + Wiener filter);
- the same network trained with PyTorch autograd, when torch is installed (skipped otherwise), in two
  variants: a direct port that runs all K layers under autograd every epoch, and one that caches the
  fixed layers like this project does;
- a plain float32 matrix product of the fixed layers' shapes, (T F x R) @ (R x N): the machine's ceiling;
- with ``--device DEVICE`` (``cpu``, ``cuda``, ``cuda:1``...): the same epoch and inference, through the same
  functions, on torch tensors on that device under scikit-learn's ``array_api_dispatch`` (wall-clock times,
  the device synchronized before each clock reading), next to the numpy ones.

Inference throughput counts the matrix-product flops of the network (4 T F R N per fixed layer,
4 F R N per trained layer, 2 F R N for the output) divided by the time of a whole pass.

    python benchmarks/bench_training.py [--quick] [--json PATH] [--repeat N] [--device DEVICE]
"""

import argparse
import json
import os
import time

import numpy as np

from sklearn import config_context

from sklearn_unfold._nmf import layout
from sklearn_unfold._nmf.divergences import eps_for
from sklearn_unfold._nmf.network import NetworkSpec, fixed_part, run_network
from sklearn_unfold._nmf.scaling import safe_scale
from sklearn_unfold._nmf.trainer import TrainingProblem, evaluate, multiplicative_update


def best_time(func, repeat, clock=time.process_time, sync=None):
    """Minimum over ``repeat`` runs of the CPU time of ``func`` (the machine is shared; CPU time
    is what this process used, wall time would count the others' load).

    ``clock=time.perf_counter`` with ``sync`` (e.g. ``torch.cuda.synchronize``) times work queued
    on an accelerator: the clock is read after the device finished.
    """
    times = []
    for _ in range(repeat):
        if sync:
            sync()
        start = clock()
        func()
        if sync:
            sync()
        times.append(clock() - start)
    return min(times)


def products_only(K, C, R, T, F, X, W_fixed, layers, batch_size, repeat):
    """The inference pass's matrix products alone, same shapes, same C-ordered layout.

    Per chunk: the fixed layers' ``W H`` and ``W^T V`` on (T F, n), the trained
    update layers' on (F, n) and the output's ``W H``, with no element-wise
    work: the time ``predict`` would take if everything else were free.
    """
    W_fixed = np.ascontiguousarray(W_fixed)
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


def make_problem(K, C, R, T, F, N, seed=0):
    """X and y laid out as DeepNMF reads them (one context-stacked frame per row, float32).

    The two sources split every value of the mixture at random, so they sum to it.
    Returns X, y, the speech target frames (F, N) and the fixed bases (T F, 2 R).
    """
    rng = np.random.default_rng(seed)
    dtype = np.float32
    X = rng.gamma(1.0, 1.0, (N, T * F)).astype(dtype)
    share = rng.uniform(0, 1, (N, T * F)).astype(dtype)
    y = np.hstack([X * share, X * (1 - share)])
    speech = np.ascontiguousarray(y[:, T * F - F : T * F].T)
    W_fixed = rng.uniform(0.1, 1.0, (T * F, 2 * R)).astype(dtype)
    W_fixed /= np.linalg.norm(W_fixed, axis=0)
    layers = [np.ascontiguousarray(W_fixed[-F:]).copy() for _ in range(C)]
    return X, y, speech, W_fixed, layers


def ours(K, C, R, T, F, X, y, W_fixed, layers, batch_size, repeat, **timing):
    """One training epoch and one inference pass, through the estimators' own functions.

    The epoch is what ``train_layers`` does per accepted update: the
    multiplicative update (eq. 38) and the objective with the gradient parts
    of every trained matrix summed over all frames (``evaluate``); the
    training problem is built as ``DeepNMF.fit`` builds it (``fixed_part``
    once, target frames as views of X and y). Inference is ``run_network``,
    what ``predict`` runs (all K layers and the Wiener filter).
    """
    spec = NetworkSpec(n_layers=K, n_trained=C, n_context=T, n_frequencies=F, n_components=R, n_sources=2,
                       beta=1.0, sparsity=1.0)
    scale = safe_scale(X)
    M = layout.mixture_targets(X, F, contiguous=True)
    problem = TrainingProblem(
        spec=spec, M_layers=M, M=M, sources=layout.source_targets(y, T * F, F, 2, contiguous=True),
        H_start=fixed_part(spec, W_fixed, X, scale=scale, batch_size=batch_size),
        mu=spec.mu(scale, X.dtype), weights=(1.0, 0.0), target_beta=2.0,
    )
    trainable, structures, eps = [True] * C, [None] * C, eps_for(X.dtype)
    _, grads = evaluate(problem, layers, batch_size=batch_size)

    def epoch():
        candidate = multiplicative_update(layers, grads, 1.0, trainable=trainable, structures=structures, eps=eps)
        return evaluate(problem, candidate, trainable=trainable, batch_size=batch_size)

    def inference():
        return run_network(spec, W_fixed, layers, X, output="sources", batch_size=batch_size)

    return best_time(epoch, repeat, **timing), best_time(inference, repeat, **timing)


def on_device(device, K, C, R, T, F, X, y, W_fixed, layers, batch_size, repeat):
    """:func:`ours` on torch tensors on ``device``: epoch and inference wall times in seconds."""
    import torch

    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def moved(a):
        return torch.asarray(np.ascontiguousarray(a), device=device)

    with config_context(array_api_dispatch=True):
        return ours(K, C, R, T, F, moved(X), moved(y), moved(W_fixed), [moved(W) for W in layers], batch_size,
                    repeat, clock=time.perf_counter, sync=sync)


def torch_epochs(K, C, R, F, N, M_ctx, speech, W_fixed, layers, repeat, threads=None):
    import torch

    if threads:
        torch.set_num_threads(threads)
    M_ctx_t = torch.from_numpy(M_ctx)
    M_t = M_ctx_t[-F:]
    S_t = torch.from_numpy(speech)
    Wf = torch.from_numpy(W_fixed)
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


def time_to_loss(K, C, R, T, F, X, y, W_fixed, layers, batch_size, n_updates, lrs, max_epochs):
    """Whole training to the same loss: multiplicative back-propagation vs torch autograd + Adam.

    Ours: ``train_layers`` (what ``DeepNMF.fit`` runs) for ``n_updates`` accepted updates from the
    starting layers; its final objective is the target. Torch: the same network and objective
    (fixed layers cached), Adam from the same start, non-negativity kept by clamping at 0 after
    each step, for every learning rate of ``lrs``, until the objective reaches the target (at most
    ``max_epochs`` epochs). CPU seconds; None when a learning rate never gets there.
    """
    import torch

    from sklearn_unfold._nmf.trainer import train_layers

    spec = NetworkSpec(n_layers=K, n_trained=C, n_context=T, n_frequencies=F, n_components=R, n_sources=2,
                       beta=1.0, sparsity=1.0)
    M = layout.mixture_targets(X, F, contiguous=True)
    sources = layout.source_targets(y, T * F, F, 2, contiguous=True)
    start = time.process_time()
    problem = TrainingProblem(spec=spec, M_layers=M, M=M, sources=sources,
                              H_start=fixed_part(spec, W_fixed, X, batch_size=batch_size),
                              mu=1.0, weights=(1.0, 0.0), target_beta=2.0)
    fixed_seconds = time.process_time() - start
    start = time.process_time()
    _, n_iter, curve, *_ = train_layers(problem, [W.copy() for W in layers], max_iter=n_updates, tol=0.0,
                                       batch_size=batch_size)
    ours_seconds = time.process_time() - start
    target = curve[-1] * X.shape[0]

    M_t, S_t = torch.from_numpy(M), torch.from_numpy(sources[0])
    H_cached = torch.from_numpy(np.ascontiguousarray(problem.H_start))
    eps = 1e-10

    def loss_of(params):
        H = H_cached
        for W in params[:-1]:
            Lam = torch.clamp(W @ H, min=eps)
            H = H * (W.T @ (M_t / Lam)) / (W.sum(0)[:, None] + 1.0)
        W_out = params[-1]
        speech = W_out[:, :R] @ H[:R]
        total = torch.clamp(speech + W_out[:, R:] @ H[R:], min=eps)
        return 0.5 * ((S_t - M_t * speech / total) ** 2).sum()

    adam = {}
    for lr in lrs:
        params = [torch.from_numpy(W.copy()).requires_grad_(True) for W in layers]
        optimizer = torch.optim.Adam(params, lr=lr)
        start = time.process_time()
        reached = None
        for epoch in range(1, max_epochs + 1):
            optimizer.zero_grad()
            loss = loss_of(params)
            if loss.detach().item() <= target:
                reached = (time.process_time() - start, epoch - 1)
                break
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for W in params:
                    W.clamp_(min=0)
        adam[lr] = reached
    return {"n_updates": n_iter, "target_loss_per_frame": curve[-1], "time_to_loss_seconds": ours_seconds,
            "fixed_layers_seconds": fixed_seconds, "adam": adam}


def matmul_ceiling(R, T, F, N, repeat):
    rng = np.random.default_rng(1)
    A = rng.random((T * F, 2 * R), dtype=np.float32)
    B = rng.random((2 * R, N), dtype=np.float32)
    seconds = best_time(lambda: A @ B, repeat)
    return 2.0 * A.shape[0] * A.shape[1] * B.shape[1] / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 000 frames, K = 5, best of two runs")
    parser.add_argument("--json", help="write the measurements as JSON here")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="BLAS / torch threads for every contender")
    parser.add_argument("--device", default=None,
                        help="also run the same network on torch tensors on this device (cpu, cuda, ...) "
                             "under array_api_dispatch")
    args = parser.parse_args(argv)
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
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    K, C, R, T, F, N = (5, 2, 100, 9, 129, 1000) if args.quick else (25, 2, 100, 9, 129, 10000)
    repeat = 2 if args.quick else args.repeat
    X, y, speech, W_fixed, layers = make_problem(K, C, R, T, F, N)
    epoch_s, infer_s = ours(K, C, R, T, F, X, y, W_fixed, layers, args.batch_size, repeat)
    gemm_s = products_only(K, C, R, T, F, X, W_fixed, layers, args.batch_size, repeat)
    flops = (K - C + 1) * 4 * T * F * 2 * R * N + (C - 1) * 4 * F * 2 * R * N + 2 * F * 2 * R * N
    ceiling = matmul_ceiling(R, T, F, N, repeat)
    result = {"K": K, "C": C, "R_total": 2 * R, "T": T, "F": F, "n_frames": N, "dtype": "float32",
              "epoch_seconds": epoch_s, "inference_seconds": infer_s,
              "inference_gflops": flops / infer_s / 1e9, "matmul_gflops": ceiling / 1e9,
              "products_only_seconds": gemm_s, "inference_gemm_ratio": gemm_s / infer_s,
              "load_average": list(os.getloadavg())}
    print(f"topology: K={K}, C={C}, R=2x{R}, T={T}, F={F}, {N} frames, float32, threads={args.threads or 'default'}")
    print(f"sklearn_unfold   epoch {epoch_s * 1e3:9.1f} ms   inference {infer_s * 1e3:9.1f} ms "
          f"({result['inference_gflops']:.1f} GFLOP/s of matrix products)")
    print(f"matmul ceiling   {ceiling / 1e9:.1f} GFLOP/s  -> inference at {result['inference_gflops'] * 1e9 / ceiling:.2f} of it")
    print(f"products only    {gemm_s * 1e3:9.1f} ms  -> inference_gemm_ratio {gemm_s / infer_s:.2f} "
          f"(CPU times; load average {os.getloadavg()[0]:.2f})")
    if args.device:
        np_wall = ours(K, C, R, T, F, X, y, W_fixed, layers, args.batch_size, repeat, clock=time.perf_counter)
        dev_epoch_s, dev_infer_s = on_device(args.device, K, C, R, T, F, X, y, W_fixed, layers, args.batch_size,
                                             repeat)
        result.update(device=args.device, numpy_epoch_wall_seconds=np_wall[0],
                      numpy_inference_wall_seconds=np_wall[1], device_epoch_seconds=dev_epoch_s,
                      device_inference_seconds=dev_infer_s)
        print(f"wall clock       numpy epoch {np_wall[0] * 1e3:9.1f} ms   inference {np_wall[1] * 1e3:9.1f} ms")
        print(f"torch on {args.device:<7} epoch {dev_epoch_s * 1e3:9.1f} ms   inference {dev_infer_s * 1e3:9.1f} ms "
              f"(array_api_dispatch, wall clock)")
    try:
        full_s, cached_s, version = torch_epochs(
            K, C, R, F, N, np.ascontiguousarray(X.T), speech, W_fixed, layers, repeat, args.threads
        )
    except ImportError:
        print("torch not installed: PyTorch autograd comparison skipped")
    else:
        result.update(torch_version=version, torch_epoch_full_seconds=full_s, torch_epoch_cached_seconds=cached_s)
        print(f"torch {version} autograd, all K layers every epoch  {full_s * 1e3:9.1f} ms  "
              f"-> sklearn_unfold is {full_s / epoch_s:.1f}x faster")
        print(f"torch {version} autograd, fixed layers cached     {cached_s * 1e3:9.1f} ms  "
              f"-> sklearn_unfold is {cached_s / epoch_s:.2f}x as fast")
    try:
        lrs = (1e-3, 3e-3, 1e-2, 3e-2)
        race = time_to_loss(K, C, R, T, F, X, y, W_fixed, layers, args.batch_size,
                            n_updates=5 if args.quick else 20, lrs=lrs, max_epochs=100 if args.quick else 400)
    except ImportError:
        pass
    else:
        reached = {lr: r for lr, r in race["adam"].items() if r is not None}
        best = min(reached.items(), key=lambda item: item[1][0]) if reached else None
        result.update(time_to_loss_seconds=race["time_to_loss_seconds"],
                      target_loss_per_frame=race["target_loss_per_frame"],
                      torch_adam_time_to_loss_seconds=best[1][0] if best else None,
                      torch_adam_best_lr=best[0] if best else None,
                      torch_adam_epochs_to_loss=best[1][1] if best else None,
                      torch_adam_by_lr={str(lr): r for lr, r in race["adam"].items()})
        print(f"to the loss of {race['n_updates']} MU updates ({race['target_loss_per_frame']:.6g} per frame): "
              f"sklearn_unfold {race['time_to_loss_seconds']:.2f} s")
        for lr, r in race["adam"].items():
            print(f"  torch Adam lr={lr:g}: " + (f"{r[0]:.2f} s ({r[1]} epochs)" if r else "not reached"))
        if best:
            print(f"  -> MU reaches it {best[1][0] / race['time_to_loss_seconds']:.1f}x sooner than the best Adam")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
