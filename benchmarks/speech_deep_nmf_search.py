"""Continue DeepNMF's cross-validated search of ``speech_enhancement.py`` past the edge of its grid.

``speech_enhancement.py`` chooses DeepNMF's hyper-parameters by a coordinate search of
``GroupKFold`` grid searches on the training utterances. When the chosen value lies on the edge of
a grid (e.g. C = 3 of {1, 2, 3}, or early stopping ending at the cap on updates), the search has not
found its optimum. This script runs one more ``GridSearchCV`` stage on the same training frames,
the same folds and the same scorer, over the values given with ``--grid`` and the others fixed,
then refits the chosen model on all training frames and scores it once on the 240 test mixtures.
The reason to extend is read off the training data's cross-validation only, never off test scores.

    python benchmarks/speech_deep_nmf_search.py [--grid n_trained_layers=3,4,5] [--max-iter 600]
        [--sparsity 3 --n-components 100 --n-layers 25 --n-trained-layers 3] [--quick] [--json PATH]
"""

import argparse
import json
import os
import sys
import time
import warnings

from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import speech_enhancement as se  # noqa: E402  (the benchmark next to this script)

from sklearn_unfold import sdr_scorer  # noqa: E402
from sklearn_unfold._protocol import make_test_set  # noqa: E402

_INTEGER_PARAMS = ("n_components", "n_layers", "n_trained_layers", "max_iter")
_PARAMS = _INTEGER_PARAMS + ("sparsity",)


def _grid(text):
    """``name=v1,v2,...`` -> (name, [values])."""
    name, _, values = text.partition("=")
    if name not in _PARAMS or not values:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... with NAME in {', '.join(_PARAMS)}; got {text!r}")
    kind = int if name in _INTEGER_PARAMS else float
    try:
        return name, [kind(v) for v in values.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"values of {name} must be {kind.__name__}s; got {values!r}") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=_grid, action="append",
                        help="NAME=V1,V2,... (repeatable; default n_trained_layers=3,4,5)")
    parser.add_argument("--sparsity", type=float, default=3.0)
    parser.add_argument("--n-components", type=int, default=100)
    parser.add_argument("--n-layers", type=int, default=25)
    parser.add_argument("--n-trained-layers", type=int, default=3)
    parser.add_argument("--max-iter", type=int, help="cap on updates (default: speech_enhancement.py's)")
    parser.add_argument("--quick", action="store_true", help="a few utterances and small models (under a minute)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the CV results and the test row as JSON here")
    args = parser.parse_args(argv)
    cfg = dict(se.CONFIGS["quick" if args.quick else "full"], threads=args.threads)
    fixed = dict(sparsity=args.sparsity, n_components=args.n_components, n_layers=args.n_layers,
                 n_trained_layers=args.n_trained_layers, max_iter=args.max_iter or cfg["max_iter"])
    if args.quick:
        fixed.update(n_components=10, n_layers=6)
    grid = dict(args.grid or [("n_trained_layers", [3, 4, 5])])
    with threadpool_limits(args.threads):
        result = run(cfg, fixed, grid)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def run(cfg, fixed, grid):
    warnings.simplefilter("ignore", ConvergenceWarning)
    start = time.perf_counter()
    X, Y, groups = se.training_set(cfg)
    test = make_test_set(n_utterances=cfg["test_utts"])
    print(f"data: {X.shape[0]:,} training frames, {len(test.mixtures)} test mixtures", flush=True)
    cv, how = se.make_cv(cfg["folds"])
    estimator = se.CachedBasesDeepNMF(
        **fixed, early_stopping=True, n_iter_no_change=cfg["n_iter_no_change"], bases_max_iter=cfg["bases_iter"],
        random_state=0,
    )
    with config_context(enable_metadata_routing=True):
        search = GridSearchCV(estimator.set_fit_request(groups=True), grid, scoring=sdr_scorer, cv=cv,
                              error_score="raise")
        search.fit(X, Y, groups=groups)
    described = ", ".join(f"{k}={v}" for k, v in fixed.items() if k not in grid)
    print(f"  DeepNMF: {', '.join(grid)} ({described}; {how}, magnitude SDR of speech)")
    se.print_search(search, list(grid))
    model = search.best_estimator_
    print(f"  chosen: {', '.join(f'{k}={model.get_params()[k]}' for k in grid)}; refit on all training frames in "
          f"{search.refit_time_:.1f} s: {model.n_iter_} updates (at most {model.max_iter})", flush=True)
    bench = se.Benchmark(test, se.speech_metrics_missing())
    bench.score_deep_nmf(f"DeepNMF {se._describe(model)} (CV, extended)", model, search.refit_time_)
    print()
    se.print_table(bench)
    print(f"total {time.perf_counter() - start:.0f} s")
    results = search.cv_results_
    return {
        "grid": grid, "fixed": fixed,
        "cv": [{"params": p, "mean_sdr": float(m), "std_sdr": float(s)}
               for p, m, s in zip(results["params"], results["mean_test_score"], results["std_test_score"])],
        "chosen": {k: model.get_params()[k] for k in grid}, "n_iter_": int(model.n_iter_),
        "test": {k: v for k, v in bench.rows[0].items() if k != "name"},
    }


if __name__ == "__main__":
    main()
