"""SparseNMF against scikit-learn's NMF(solver="mu"): time per iteration and time to the same objective.

Same matrix, rank and starting point for both: ``SparseNMF(init="random", random_state=0)`` draws its
unit-norm bases and its activations (``init_bases``, ``init_training_activations``) and scikit-learn
starts from exactly those (``init="custom"``, ``W = activations.T``, ``H = bases.T``). Sparsity is 0, so
both solvers minimize the reconstruction divergence ``D_beta(X | W H)`` (generalized KL for beta = 1,
half the squared Frobenius error for beta = 2); they differ in the model (ours keeps unit-norm bases
and takes the normalization-aware basis step, scikit-learn takes plain multiplicative steps).

What is compared: each solver's own reported objective, both the reconstruction divergence
``D_beta(X | W H)`` on the same data (ours: ``loss_curve_``, which is exactly that with sparsity 0;
scikit-learn: ``_beta_divergence(X, W, H, beta)``, evaluated outside its timed region). scikit-learn runs
its own loop (``_multiplicative_update_w`` / ``_h``, the body of ``_fit_multiplicative_update``, with its
convergence test every 10 iterations timed as part of its cost) until its default stopping rule
(``tol=1e-4``) or ``--max-iter``. Its final objective is the target; ``time_to_objective_seconds`` is
the CPU time our ``fit`` (validation and initialization included) takes until its objective is at or
below that target, ``sklearn_time_to_objective_seconds`` scikit-learn's (its first iteration at or
below the target, i.e. its end); ours may run ``--ours-iter-factor`` times scikit-learn's iterations
(``None``: it did not get there). ``objective_at_iteration`` pairs both objectives after equal
iteration counts.

Threads are pinned equally (``threadpoolctl``, BLAS and OpenMP, ``--threads``, default 1). The
measurement runs twice in fresh processes: with ``OPENBLAS_CORETYPE`` as it is in the environment and
with it unset for that command; both are reported. CPU (``time.process_time``) and wall times.

    python benchmarks/bench_sparse_nmf.py [--quick] [--json PATH] [--threads N] [--dtype float32]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np


class _Reached(Exception):
    pass


def make_data(n_samples, n_features, rank, dtype, seed=0):
    """Spectrogram-like non-negative data: a sparse rank-2R product with multiplicative noise and some zeros."""
    rng = np.random.default_rng(seed)
    true_rank = 2 * rank
    A = rng.gamma(0.3, 1.0, (n_samples, true_rank))
    B = rng.gamma(0.5, 1.0, (true_rank, n_features))
    X = (A @ B) * rng.uniform(0.6, 1.4, (n_samples, n_features))
    X[rng.random(X.shape) < 0.02] = 0.0
    X /= X.max()
    return X.astype(dtype)


def starting_point(X, rank):
    """The bases and activations SparseNMF(init='random', random_state=0) starts from, in its orientation."""
    from sklearn.utils import check_random_state

    from sklearn_unfold._nmf.scaling import safe_scale
    from sklearn_unfold._nmf.updates import init_bases, init_training_activations

    rng = check_random_state(0)
    scale = safe_scale(X)
    M = X.T if scale == 1.0 else X.T / scale
    W = init_bases(M, rank, "random", rng)
    H = init_training_activations(M, W, rng)
    return W, H * scale


def run_sklearn(X, W0, H0, beta, max_iter, tol=1e-4):
    """scikit-learn's multiplicative-update loop from (activations, bases), timed per iteration."""
    from sklearn.decomposition._nmf import _beta_divergence, _multiplicative_update_h, _multiplicative_update_w

    W = np.array(H0.T, dtype=X.dtype, order="C")
    H = np.array(W0.T, dtype=X.dtype, order="C")
    gamma = 1.0
    cpu = wall = 0.0
    c0, w0 = time.process_time(), time.perf_counter()
    error_at_init = previous_error = _beta_divergence(X, W, H, beta, square_root=True)
    cpu += time.process_time() - c0
    wall += time.perf_counter() - w0
    curve = [(0.0, 0.0, _beta_divergence(X, W, H, beta))]
    iteration_cpu = []
    for n_iter in range(1, max_iter + 1):
        c0, w0 = time.process_time(), time.perf_counter()
        W, *_ = _multiplicative_update_w(X, W, H, beta_loss=beta, l1_reg_W=0, l2_reg_W=0, gamma=gamma)
        H = _multiplicative_update_h(X, W, H, beta_loss=beta, l1_reg_H=0, l2_reg_H=0, gamma=gamma)
        if beta <= 1:
            H[H < np.finfo(np.float64).eps] = 0.0
        stop = False
        if n_iter % 10 == 0:
            error = _beta_divergence(X, W, H, beta, square_root=True)
            stop = (previous_error - error) / error_at_init < tol
            previous_error = error
        dc, dw = time.process_time() - c0, time.perf_counter() - w0
        cpu, wall = cpu + dc, wall + dw
        iteration_cpu.append(dc)
        curve.append((cpu, wall, float(_beta_divergence(X, W, H, beta))))
        if stop:
            break
    return curve, iteration_cpu


def run_ours(X, rank, beta, max_iter, target=None):
    """SparseNMF.fit (tol=0) with the objective and CPU/wall time recorded after every iteration.

    Recording goes through the solver's per-iteration ``_report`` hook; with ``target`` the fit is
    abandoned at the first iteration whose objective is at or below it.
    """
    from sklearn_unfold import SparseNMF
    from sklearn_unfold._nmf import updates

    curve = []
    clock = {}
    original = updates._report

    def record(verbose, n_iter, loss, start):
        cpu, wall = time.process_time() - clock["cpu"], time.perf_counter() - clock["wall"]
        curve.append((cpu, wall, float(loss)))
        if target is not None and loss <= target:
            raise _Reached

    updates._report = record
    try:
        est = SparseNMF(rank, beta_loss=beta, sparsity=0.0, init="random", random_state=0, max_iter=max_iter, tol=0)
        clock.update(cpu=time.process_time(), wall=time.perf_counter())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                est.fit(X)
            except _Reached:
                pass
    finally:
        updates._report = original
    iteration_cpu = np.diff([0.0] + [c for c, _, _ in curve]).tolist()
    return curve, iteration_cpu


def first_at_or_below(curve, target):
    for cpu, wall, value in curve:
        if value <= target:
            return cpu, wall
    return None, None


def measure(args):
    from threadpoolctl import threadpool_limits

    import sklearn_unfold

    results = {
        "shape": [args.n_samples, args.n_features], "rank": args.rank, "dtype": args.dtype,
        "threads": args.threads, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "package": os.path.dirname(sklearn_unfold.__file__), "load_average_start": os.getloadavg(),
        "betas": {},
    }
    X = make_data(args.n_samples, args.n_features, args.rank, np.dtype(args.dtype))
    W0, H0 = starting_point(X, args.rank)
    with threadpool_limits(limits=args.threads):
        for beta in args.betas:
            sk_curve, sk_iter = run_sklearn(X, W0, H0, beta, args.max_iter)
            target = sk_curve[-1][2]
            # Ours may need more iterations than scikit-learn: up to --ours-iter-factor times as many.
            ours_curve, ours_iter = run_ours(X, args.rank, beta, args.ours_iter_factor * args.max_iter, target=target)
            t_ours = first_at_or_below(ours_curve, target)
            t_sk = first_at_or_below(sk_curve, target)
            sk_at = {n: value for n, (_, _, value) in enumerate(sk_curve)}
            row = {
                "seconds_per_iteration": float(np.median(ours_iter[1:])),
                "sklearn_seconds_per_iteration": float(np.median(sk_iter[1:])),
                "target_objective": target,
                "time_to_objective_seconds": t_ours[0],
                "time_to_objective_wall_seconds": t_ours[1],
                "sklearn_time_to_objective_seconds": t_sk[0],
                "sklearn_time_to_objective_wall_seconds": t_sk[1],
                # ours_curve[k] is the objective after iteration k + 1.
                "iterations_to_objective": len(ours_curve) if t_ours[0] is not None else None,
                "sklearn_iterations": len(sk_curve) - 1,
                "final_objective": ours_curve[-1][2],
                "sklearn_final_objective": target,
                "objective_at_iteration": {
                    str(n): [ours_curve[n - 1][2], sk_at[n]]
                    for n in (1, 10, 20, 50, 100, 200) if n <= len(ours_curve) and n in sk_at
                },
            }
            row["per_iteration_ratio"] = row["seconds_per_iteration"] / row["sklearn_seconds_per_iteration"]
            if t_ours[0] is not None:
                row["time_to_objective_ratio"] = t_ours[0] / t_sk[0]
            results["betas"][str(beta)] = row
    results["load_average_end"] = os.getloadavg()
    return results


def table(results):
    lines = [
        f"OPENBLAS_CORETYPE={results['OPENBLAS_CORETYPE']}  {results['shape'][0]} x {results['shape'][1]}, "
        f"R = {results['rank']}, {results['dtype']}, {results['threads']} thread(s), load average "
        f"{' '.join(f'{v:.2f}' for v in results['load_average_start'])} -> "
        f"{' '.join(f'{v:.2f}' for v in results['load_average_end'])}",
        f"{'beta':>5} {'s/iter':>8} {'sk s/iter':>9} {'ratio':>6} {'to target':>9} {'iters':>5} "
        f"{'sk to target':>12} {'sk iters':>8} {'ratio':>6} {'target':>12}",
    ]
    for beta, row in results["betas"].items():
        t = row["time_to_objective_seconds"]
        lines.append(
            f"{beta:>5} {row['seconds_per_iteration']:8.4f} {row['sklearn_seconds_per_iteration']:9.4f} "
            f"{row['per_iteration_ratio']:6.2f} {('never' if t is None else f'{t:9.2f}'):>9} "
            f"{str(row['iterations_to_objective']):>5} {row['sklearn_time_to_objective_seconds']:12.2f} "
            f"{row['sklearn_iterations']:8d} {row.get('time_to_objective_ratio', float('nan')):6.2f} "
            f"{row['target_objective']:12.6g}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small problem for CI (well under 30 s)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--n-features", type=int, default=1161)
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--ours-iter-factor", type=int, default=3,
                        help="ours may run this many times scikit-learn's iterations to reach its objective")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_samples, args.n_features, args.rank, args.max_iter = 2000, 300, 20, 30
    if args.child:
        print(json.dumps(measure(args)))
        return
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
    if args.json:
        forwarded = [a for a in forwarded if a != args.json]
    variants = {}
    for name, unset in (("coretype_as_is", False), ("coretype_unset", True)):
        env = dict(os.environ)
        if unset:
            env.pop("OPENBLAS_CORETYPE", None)
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", *forwarded], env=env, check=True,
            capture_output=True, text=True,
        ).stdout
        variants[name] = json.loads(out.strip().splitlines()[-1])
        print(table(variants[name]), flush=True)
    first = variants["coretype_as_is"]["betas"]
    keys = ("seconds_per_iteration", "sklearn_seconds_per_iteration", "time_to_objective_seconds",
            "sklearn_time_to_objective_seconds", "time_to_objective_wall_seconds",
            "sklearn_time_to_objective_wall_seconds", "iterations_to_objective", "sklearn_iterations",
            "per_iteration_ratio", "time_to_objective_ratio")
    # Headline keys (OPENBLAS_CORETYPE as it is), one value per beta; both runs in full below.
    summary = {key: {beta: row.get(key) for beta, row in first.items()} for key in keys}
    summary["command"] = " ".join(
        ["python", "benchmarks/bench_sparse_nmf.py", *(argv if argv is not None else sys.argv[1:])]
    )
    summary.update(variants)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
