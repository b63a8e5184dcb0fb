"""Grid search over K (layers) and C (trained layers) of DeepNMF on real speech.

The features come from the benchmark's training mixtures (real speech from Debian's
asterisk-core-sounds-en-wav + music noise, see sklearn_unfold.datasets). Folds are grouped by
utterance (``GroupKFold``), so an utterance heard at one SNR in training is never scored at another
SNR in validation, and the score is the magnitude-domain SDR of the speech estimate
(``sklearn_unfold.sdr_scorer``). Every fit learns its own sparse NMF bases on its training folds.

    python examples/grid_search_k_c.py [--quick]
"""

import argparse
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_unfold import DeepNMF, sdr_scorer
from sklearn_unfold._protocol import make_training_set


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and grid (about a minute)")
    args = parser.parse_args(argv)
    n_frames, grid = (1500, {"n_layers": [2, 5], "n_trained_layers": [0, 1, 2]}) if args.quick else (
        4000, {"n_layers": [4, 10], "n_trained_layers": [0, 1, 2, 3]})
    X, Y, groups = make_training_set(n_utterances=30, n_frames=n_frames)
    print(f"{X.shape[0]} frames of {X.shape[1]} features from {len(np.unique(groups))} utterances")
    warnings.simplefilter("ignore", ConvergenceWarning)
    search = GridSearchCV(
        DeepNMF(n_components=20, sparsity=1.0, max_iter=30, bases_max_iter=30, random_state=0),
        grid,
        scoring=sdr_scorer,
        cv=GroupKFold(n_splits=3),
        n_jobs=1,
    )
    search.fit(X, Y, groups=groups)
    results = search.cv_results_
    print(f"{'K':>3} {'C':>3} {'SDR [dB] (mean +- std over folds)':>36}")
    for params, mean, std in zip(results["params"], results["mean_test_score"], results["std_test_score"]):
        print(f"{params['n_layers']:>3} {params['n_trained_layers']:>3} {mean:>28.2f} +- {std:.2f}")
    print("best:", search.best_params_, f"{search.best_score_:.2f} dB")
    return search


if __name__ == "__main__":
    main()
