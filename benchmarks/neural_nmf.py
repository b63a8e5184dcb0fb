"""NeuralNMF against hierarchical NMF and deep NMF: the poster's Table 1 layout.

For 1, 2 and 3 layers, and unsupervised, semi-supervised (40 % of the
training labels) and supervised training, report the relative training
reconstruction error ``||X - A_0...A_L S_L||_F / ||X||_F`` and, with labels,
the accuracy on a held-out test split, for three methods:

- **Hier. NMF**: ``sklearn.decomposition.NMF`` layer by layer (X ~ A_0 S_0,
  S_0 ~ A_1 S_1, ...), which is NeuralNMF's default start
  (``_neural_nmf.init_factors``, same seed), so all three methods start from the
  same factors. Codes, for training and test samples, are the layered NNLS
  ``S_i = q(S_(i-1), A_i)``. The factorization ignores the labels; with
  labels, a non-negative least-squares classifier
  ``B = argmin_{B>=0} ||Y - B S_L||`` is fitted on the labeled training samples.
- **Deep NMF (MU)**: all factors and ``S_L`` trained jointly by multiplicative
  updates on ``||X - A_0...A_L S_L||^2`` plus, with labels, the semi-supervised
  NMF term ``||M * (Y - B S_L)||^2`` (Lee, Yoo & Choi 2010), with the same
  weights as NeuralNMF; started from the hierarchical NMF. ``S_L`` is a free
  variable here, so test samples get the NNLS code on the product
  ``A_0...A_L``.
- **Neural NMF**: :class:`sklearn_unfold.neural_nmf.NeuralNMF`, started from the
  same hierarchical NMF.

Data: a synthetic hierarchical data set like the poster's (9 subtopics in 4
topics in 2 super-topics; ranks 9 -> 4 -> 2; the class is the topic)
and scikit-learn's digits (ranks 24 -> 16 -> 10; the class is the digit).

Run ``python benchmarks/neural_nmf.py`` (a few minutes, one thread) or with
``--quick`` (well under 2 minutes); ``--json PATH`` writes every number.
"""

import argparse
import json
import os
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from sklearn_unfold import NeuralNMF
from sklearn_unfold._neural_nmf import chain, forward, init_factors
from sklearn_unfold._nnls import nnls

MODES = ("unsupervised", "semi-supervised", "supervised")
METHODS = ("Hier. NMF", "Deep NMF (MU)", "Neural NMF")
LABELED_FRACTION = 0.4
LABEL_WEIGHT = 1.0


# ---------------------------------------------------------------- data sets


def hierarchical_data(n_per_topic, n_features_per_topic=10, noise=0.1, seed=0):
    """Non-negative data with a 9 -> 4 -> 2 topic hierarchy, like the poster's.

    Subtopics 0-8 group into topics [0 1 2], [3 4], [5 6], [7 8], and those
    into super-topics [topics 0 1], [topics 2 3]. A sample of subtopic j puts
    weight 1 on j's features, 0.5 on the other features of its topic, 0.25 on
    the rest of its super-topic, times a random level in [0.5, 1.5], plus
    uniform noise of size ``noise``. Returns X (n_samples, n_features) and
    the topic labels (4 classes), so that the 2-rank top layer has to keep
    apart topics of the same super-topic to classify.
    """
    rng = np.random.default_rng(seed)
    sub_to_topic = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3])
    topic_to_super = np.array([0, 0, 1, 1])
    feat = np.repeat(np.arange(9), n_features_per_topic)
    sub = np.repeat(np.arange(9), n_per_topic)
    same_sub = feat[:, None] == sub[None, :]
    same_topic = sub_to_topic[feat][:, None] == sub_to_topic[sub][None, :]
    same_super = topic_to_super[sub_to_topic[feat]][:, None] == topic_to_super[sub_to_topic[sub]][None, :]
    pattern = np.where(same_sub, 1.0, np.where(same_topic, 0.5, np.where(same_super, 0.25, 0.0)))
    X = pattern * rng.uniform(0.5, 1.5, size=sub.size) + noise * rng.random(pattern.shape)
    return X.T, sub_to_topic[sub]


def load_data(name, quick, seed=0):
    if name == "synthetic":
        X, y = hierarchical_data(n_per_topic=12 if quick else 30, seed=seed)
        ranks = [9, 4, 2]
    else:
        X, y = load_digits(return_X_y=True)
        keep = np.random.default_rng(seed).permutation(y.size)[: 450 if quick else 1500]
        X, y = X[keep], y[keep]
        ranks = [24, 16, 10]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=1 / 3, stratify=y, random_state=seed)
    return X_tr, X_te, y_tr, y_te, ranks


def partial_labels(y, mode, seed=0):
    """Labels as NeuralNMF takes them: -1 marks unlabeled samples (stratified 40 %)."""
    if mode == "unsupervised":
        return None
    if mode == "supervised":
        return y
    rng = np.random.default_rng(seed)
    labeled = np.zeros(y.size, dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        labeled[rng.choice(idx, size=max(1, round(LABELED_FRACTION * idx.size)), replace=False)] = True
    return np.where(labeled, y, -1)


def one_hot(y_partial, classes):
    """One-hot label matrix (n_classes, n_samples) and the labeled mask."""
    mask = y_partial != -1
    Y = (classes[:, None] == y_partial[None, :]).astype(float)
    return Y, mask


# ---------------------------------------------------------------- methods


def nnls_classifier(S, Y, mask):
    """B = argmin_{B >= 0} ||Y - B S|| on the labeled columns (poster orientation)."""
    Bt, _ = nnls(S[:, mask].T, Y[:, mask].T)
    return Bt.T


def deep_nmf_mu(X, factors, S, B=None, Y=None, mask=None, *, label_weight=LABEL_WEIGHT, max_iter=1000, tol=1e-6):
    """Joint multiplicative updates for deep NMF, optionally with the SSNMF term.

    Minimizes ``w_x ||X - A_0...A_L S||^2 + w_y ||M * (Y - B S)||^2`` (halved)
    over non-negative ``A_i``, ``S`` and ``B``, with NeuralNMF's weights
    ``w_x = 1 / ||X||^2`` and ``w_y = label_weight / n_labeled``. Each update
    is the usual ratio of the negative to the positive part of the gradient
    (Lee & Seung; Trigeorgis et al. 2014 for the product; Lee, Yoo & Choi
    2010 for the label term), so the cost does not increase. Poster
    orientation: X is (n_features, n_samples).
    """
    eps = np.finfo(float).eps
    factors = [A.copy() for A in factors]
    S = S.copy()
    w_x = 1.0 / np.vdot(X, X)
    w_y = label_weight / max(int(mask.sum()), 1) if B is not None else 0.0
    MY = mask * Y if B is not None else None
    B = None if B is None else B.copy()

    def cost():
        value = 0.5 * w_x * np.sum((X - chain(factors) @ S) ** 2)
        if B is not None:
            value += 0.5 * w_y * np.sum((mask * (Y - B @ S)) ** 2)
        return value

    previous = cost()
    for _ in range(max_iter):
        for i in range(len(factors)):
            left = chain(factors[:i]) if i else np.eye(X.shape[0])
            right = chain(factors[i + 1 :]) @ S if i + 1 < len(factors) else S
            num = left.T @ X @ right.T
            den = left.T @ left @ factors[i] @ (right @ right.T)
            factors[i] *= num / np.maximum(den, eps)
        D = chain(factors)
        num, den = w_x * (D.T @ X), w_x * (D.T @ D @ S)
        if B is not None:
            num += w_y * (B.T @ MY)
            den += w_y * (B.T @ (mask * (B @ S)))
        S *= num / np.maximum(den, eps)
        if B is not None:
            B *= (MY @ S.T) / np.maximum((mask * (B @ S)) @ S.T, eps)
        current = cost()
        if previous - current < tol * previous:
            break
        previous = current
    return factors, S, B


def relative_error(X, D, S):
    """||X - D S|| / ||X|| with sklearn-oriented X (n_samples, n_features), D S in poster orientation."""
    return float(np.linalg.norm(X.T - D @ S) / np.linalg.norm(X))


def run_cell(X_tr, X_te, y_tr, y_te, ranks, mode, quick, seed=0):
    """The three methods for one (depth, mode) cell of the table."""
    y_part = partial_labels(y_tr, mode, seed)
    classes = np.unique(y_tr)
    out = {}
    Xp = X_tr.T

    # Hierarchical NMF: NeuralNMF's own starting point, so all three methods
    # start from the same factors.
    t0 = time.perf_counter()
    factors = init_factors(Xp, ranks, "hierarchical", seed)
    S_L = forward(Xp, factors)[0][-1]
    res = {"reconstruction_error": relative_error(X_tr, chain(factors), S_L)}
    B0 = None
    if y_part is not None:
        Y, mask = one_hot(y_part, classes)
        B0 = nnls_classifier(S_L, Y, mask)
        scores = B0 @ forward(X_te.T, factors)[0][-1]
        res["accuracy"] = float(np.mean(classes[np.argmax(scores, axis=0)] == y_te))
    res["seconds"] = time.perf_counter() - t0
    out[METHODS[0]] = res

    # Deep NMF by multiplicative updates, from the hierarchical NMF.
    t0 = time.perf_counter()
    if y_part is None:
        fac, S, _ = deep_nmf_mu(Xp, factors, S_L, max_iter=200 if quick else 2000)
        B = None
    else:
        fac, S, B = deep_nmf_mu(Xp, factors, S_L, B0, Y, mask, max_iter=200 if quick else 2000)
    res = {"reconstruction_error": relative_error(X_tr, chain(fac), S)}
    if B is not None:
        S_te, _ = nnls(chain(fac), X_te.T)
        res["accuracy"] = float(np.mean(classes[np.argmax(B @ S_te, axis=0)] == y_te))
    res["seconds"] = time.perf_counter() - t0
    out[METHODS[1]] = res

    # NeuralNMF, from the same hierarchical NMF (its default start).
    t0 = time.perf_counter()
    model = NeuralNMF(ranks=ranks, label_weight=LABEL_WEIGHT, max_iter=60 if quick else 500, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_tr, y_part)
    res = {
        "reconstruction_error": model.reconstruction_err_ / float(np.linalg.norm(X_tr)),
        "n_iter": model.n_iter_,
    }
    if y_part is not None:
        res["accuracy"] = float(np.mean(model.predict(X_te) == y_te))
    res["seconds"] = time.perf_counter() - t0
    out[METHODS[2]] = res
    return out


# ---------------------------------------------------------------- table


def format_table(name, ranks, cells):
    head = f"{'':12s} {'Layers':>6s}  " + "  ".join(f"{m:>16s}" for m in METHODS)
    lines = [f"{name}: reconstruction error / test accuracy (ranks {' -> '.join(map(str, ranks))})", head]
    labels = {"unsupervised": "Unsuper.", "semi-supervised": "Semisuper.", "supervised": "Supervised"}
    for mode in MODES:
        for depth in range(1, len(ranks) + 1):
            row = cells[mode][depth]
            entries = []
            for m in METHODS:
                r = row[m]
                txt = f"{r['reconstruction_error']:.3f}"
                if "accuracy" in r:
                    txt += f" / {r['accuracy']:.3f}"
                entries.append(f"{txt:>16s}")
            lines.append(f"{labels[mode] if depth == 1 else '':12s} {depth:>6d}  " + "  ".join(entries))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data and few iterations (CI)")
    parser.add_argument("--json", metavar="PATH", help="write all results to this JSON file")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    results = {"quick": args.quick, "labeled_fraction": LABELED_FRACTION, "label_weight": LABEL_WEIGHT, "datasets": {}}
    for name in ("synthetic", "digits"):
        X_tr, X_te, y_tr, y_te, ranks = load_data(name, args.quick)
        cells = {mode: {} for mode in MODES}
        for mode in MODES:
            for depth in range(1, len(ranks) + 1):
                cells[mode][depth] = run_cell(X_tr, X_te, y_tr, y_te, ranks[:depth], mode, args.quick)
        print(format_table(name, ranks, cells), end="\n\n", flush=True)
        results["datasets"][name] = {
            "ranks": ranks,
            "n_train": int(y_tr.size),
            "n_test": int(y_te.size),
            "n_features": int(X_tr.shape[1]),
            "cells": {mode: {str(d): c for d, c in cells[mode].items()} for mode in MODES},
        }
    results["seconds"] = time.perf_counter() - start
    print(f"total time {results['seconds']:.1f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
