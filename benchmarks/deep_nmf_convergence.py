"""How many multiplicative back-propagation updates DeepNMF needs to stop by ``tol`` (no early stopping).

The figures behind DeepNMF's default ``max_iter``: sparse-NMF bases learned once on the speech
benchmark's training frames (``sklearn_unfold._protocol.make_training_set``), then, with those
bases, ``DeepNMF(n_layers=K, n_trained_layers=C, tol=1e-4, max_iter=3000)`` for each C, reporting
the updates until one lowered the training objective by less than ``tol`` times its value.

    python benchmarks/deep_nmf_convergence.py [--quick] [--json PATH] [--sparsity 3] [--trained-layers 2 3]
"""

import argparse
import json
import time
import warnings

from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from sklearn_unfold import DeepNMF
from sklearn_unfold._protocol import make_training_set


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few utterances, a small network (seconds)")
    parser.add_argument("--json", help="write the counts as JSON here")
    parser.add_argument("--sparsity", type=float, default=3.0)
    parser.add_argument("--trained-layers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=3000)
    args = parser.parse_args(argv)
    utterances, frames, R, K = (8, 2000, 10, 5) if args.quick else (None, 10000, 100, 25)
    start = time.perf_counter()
    X, Y, _ = make_training_set(n_utterances=utterances, n_frames=frames)
    rows = []
    with threadpool_limits(1):
        base = DeepNMF(n_components=R, n_layers=1, n_trained_layers=0, sparsity=args.sparsity, random_state=0)
        base.fit(X, Y)
        print(f"{X.shape[0]:,} training frames; bases in {time.perf_counter() - start:.0f} s", flush=True)
        for C in args.trained_layers:
            tick = time.perf_counter()
            model = DeepNMF(n_components=R, n_layers=K, n_trained_layers=C, sparsity=args.sparsity,
                            max_iter=args.max_iter, tol=args.tol, bases=base.bases_, random_state=0)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                model.fit(X, Y)
            curve = model.loss_curve_
            row = {"n_layers": K, "n_trained_layers": C, "sparsity": args.sparsity, "tol": args.tol,
                   "n_iter": model.n_iter_, "converged": not caught, "loss_start": curve[0],
                   "loss_at_100": curve[min(100, len(curve) - 1)], "loss_end": curve[-1],
                   "seconds": time.perf_counter() - tick}
            rows.append(row)
            print(f"K={K} C={C}: {model.n_iter_} updates ({'stopped by tol' if not caught else 'max_iter reached'}), "
                  f"objective {curve[0]:.4g} -> {row['loss_at_100']:.4g} (update 100) -> {curve[-1]:.4g}, "
                  f"{row['seconds']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
