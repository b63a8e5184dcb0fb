"""Numbers behind issue 11's defects 4, 11, 12 and 14, on the current code (run it on any commit to compare).

- 11: the Wiener outputs must sum to the mixture: float32 with sparsity 1e10 and 1e12 (every
  activation underflows), and frames at 1e-10 of the peak;
- 12: ``score`` after ``set_params`` of K, C and R without a refit (must not change);
- 14: PhysicsAwareDeepNMF's ``loss_`` at 1e30 in float32 divided by the one at 1 (must be 1e60);
- 4: a refit with ``n_jobs=0`` must be refused before anything changes.

    python benchmarks/nmf_edge_cases.py [--quick] [--json PATH]
"""

import argparse
import json
import warnings

import numpy as np

from sklearn_unfold import DeepNMF, PhysicsAwareDeepNMF
from sklearn_unfold.audio import stack_context


def data(F=6, n=400, seed=0):
    rng = np.random.default_rng(seed)
    S = [rng.gamma(0.5, size=(F, 3)) @ rng.gamma(0.5, size=(3, n)) + 0.01 for _ in range(2)]
    X = stack_context((S[0] + S[1]).T, 2)
    Y = np.hstack([stack_context(S[0].T, 2), stack_context(S[1].T, 2)])
    return X, Y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = 10 instead of 25")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    F = 6
    X, Y = data(F)
    p = dict(n_components=3, n_layers=10 if args.quick else 25, n_trained_layers=2, n_context=2, max_iter=10,
             bases_max_iter=20, random_state=0)
    out = {}
    for mu in (1e10, 1e12):
        est = DeepNMF(**p, sparsity=mu).fit(X.astype(np.float32), Y.astype(np.float32))
        P = est.predict(X.astype(np.float32))
        out[f"defect11_sum_error_sparsity_{mu:.0e}"] = float(np.abs(P[:, :F] + P[:, F:] - X[:, -F:]).max())
    est = DeepNMF(**p, sparsity=0.1).fit(X, Y)
    Xs = X.copy()
    Xs[::4] *= 1e-10
    P = est.predict(Xs.astype(np.float32))
    total = P[:, :F] + P[:, F:]
    out["defect11_worst_relative_loss_at_1e-10"] = float(np.max(np.abs(total[::4] - Xs[::4, -F:]) / Xs[::4, -F:]))
    before = est.score(X, Y)
    est.set_params(n_layers=10, n_trained_layers=1, n_components=2)
    out["defect12_score_before"], out["defect12_score_after_set_params"] = before, est.score(X, Y)
    pad = dict(n_components=4, n_layers=4, n_trained_layers=2, n_context=2, hankel_size=2, max_iter=5, tol=0,
               bases_max_iter=10, random_state=0)
    a = PhysicsAwareDeepNMF(**pad).fit(X, Y).loss_
    b = PhysicsAwareDeepNMF(**pad).fit((X * 1e30).astype(np.float32), (Y * 1e30).astype(np.float32)).loss_
    out["defect14_loss_ratio_1e30"] = b / a
    est = DeepNMF(**p, sparsity=0.1).fit(X, Y)
    bases = est.bases_.copy()
    try:
        est.set_params(n_jobs=0, bases_max_iter=5).fit(X[:200], Y[:200])
        out["defect4_n_jobs_0"] = "accepted"
    except ValueError as exc:
        out["defect4_n_jobs_0"] = f"{type(exc).__name__}; bases_ unchanged: {np.array_equal(bases, est.bases_)}"
    for key, value in out.items():
        print(f"{key:45s} {value:.3g}" if isinstance(value, float) else f"{key:45s} {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
