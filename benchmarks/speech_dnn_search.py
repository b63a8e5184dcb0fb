"""The mask DNN of ``speech_enhancement.py`` searched again with more patience: is the baseline trained enough?

``speech_enhancement.py`` chooses the DNN's size and Adam learning rate by ``GroupKFold``
cross-validation on the training utterances, with early stopping after 5 epochs without
improvement on held-out utterances. Adam's validation loss is noisy from epoch to epoch, so a
short patience can stop a network that would still improve. This script repeats the same search
(same training frames, folds and scorer) with a longer patience and a larger epoch cap, then refits
the chosen network and scores it once on the 240 test mixtures — so that the DNN row is not a
weaker proxy of what a user who trains longer would get.

    python benchmarks/speech_dnn_search.py [--patience 20] [--max-epochs 200]
        [--sizes 1024 1024x1024 1536x1536] [--learning-rates 1e-3 3e-4] [--quick] [--json PATH]
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=se.parse_hidden, nargs="+", default=[(1024,), (1024, 1024), (1536, 1536)])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-3, 3e-4])
    parser.add_argument("--patience", type=int, default=20, help="epochs without improvement (default 20)")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a few utterances and small networks (seconds)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the CV results and the test row as JSON here")
    args = parser.parse_args(argv)
    cfg = dict(se.CONFIGS["quick" if args.quick else "full"], threads=args.threads)
    if args.quick:
        args.sizes, args.max_epochs, args.patience = [(32,), (64,)], 20, 5
    no_torch = se._mask_dnn.torch_missing()
    if no_torch:
        print(f"skipped: {no_torch}")
        return None
    grid = {"hidden_layer_sizes": args.sizes, "learning_rate": args.learning_rates}
    with threadpool_limits(args.threads):
        result = run(cfg, args, grid)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=list)
    return result


def run(cfg, args, grid):
    warnings.simplefilter("ignore", ConvergenceWarning)
    start = time.perf_counter()
    X, Y, groups = se.training_set(cfg)
    test = make_test_set(n_utterances=cfg["test_utts"])
    print(f"data: {X.shape[0]:,} training frames, {len(test.mixtures)} test mixtures", flush=True)
    cv, how = se.make_cv(cfg["folds"])
    estimator = se._mask_dnn.MaskDNN(max_epochs=args.max_epochs, n_iter_no_change=args.patience,
                                     n_threads=args.threads, random_state=0)
    with config_context(enable_metadata_routing=True):
        search = GridSearchCV(estimator.set_fit_request(groups=True), grid, scoring=sdr_scorer, cv=cv,
                              error_score="raise")
        search.fit(X, Y, groups=groups)
    print(f"  DNN: size and learning rate ({how}, magnitude SDR of speech; early stopping after {args.patience} "
          f"epochs without improvement, at most {args.max_epochs})")
    se.print_search(search, list(grid))
    model = search.best_estimator_
    print(f"  chosen: {se._short(model.hidden_layer_sizes)}, learning rate {model.learning_rate:g}, "
          f"{model.n_params_:,} parameters, best epoch {model.best_epoch_} of {model.n_iter_}; "
          f"refit in {search.refit_time_:.1f} s", flush=True)
    bench = se.Benchmark(test, se.speech_metrics_missing())
    bench.score_dnn(f"DNN {se._short(model.hidden_layer_sizes)} mask (CV, patience {args.patience})", model,
                    search.refit_time_)
    print()
    se.print_table(bench)
    print(f"total {time.perf_counter() - start:.0f} s")
    results = search.cv_results_
    return {
        "patience": args.patience, "max_epochs": args.max_epochs,
        "cv": [{"hidden_layer_sizes": list(p["hidden_layer_sizes"]), "learning_rate": p["learning_rate"],
                "mean_sdr": float(m), "std_sdr": float(s)}
               for p, m, s in zip(results["params"], results["mean_test_score"], results["std_test_score"])],
        "chosen": {"hidden_layer_sizes": list(model.hidden_layer_sizes), "learning_rate": model.learning_rate,
                   "best_epoch_": int(model.best_epoch_), "n_iter_": int(model.n_iter_)},
        "test": {k: v for k, v in bench.rows[0].items() if k != "name"},
    }


if __name__ == "__main__":
    main()
