"""Speed of UnfoldedMeanField / UnfoldedBP on 16x16 binary images (issue 13, goal 5).

Data of the digits benchmark's kind: scikit-learn's 8x8 digits binarized at 8
of 16, upsampled with a 2x2 block to 16x16, each pixel flipped with
probability 0.2; ``--n-train`` training images (2 455 by default, noisy
copies of the digits drawn with a fixed seed) and ``--n-test`` test images.
The estimators use ``benchmarks/mrf_denoising.py``'s recipe on a 16x16 grid:
``graph="4-grid"``, ``observation="local"``, ``tied_params=("coupling",)``,
``learning_rate_init=0.03``, ``batch_size=100``, early stopping (its
validation pass is part of every epoch), K = 10 layers, and a fixed number of
epochs (``n_iter_no_change`` larger than ``--epochs``) so that runs compare.

Printed per method: fit wall and CPU seconds, seconds per epoch (wall and
CPU), and prediction images per second (wall and CPU; best of ``--repeats``)
against ``sklearn.neural_network.MLPClassifier`` (one hidden layer of 512,
``predict``, the same images).  Threads are pinned with threadpoolctl
(``--threads``, default 1); the load average is printed before and after.

``--baseline REF`` also times the estimators with ``sklearn_unfold/_mrf`` as
it was at git commit ``REF`` (loaded from ``git show`` into a temporary
package and patched into :mod:`sklearn_unfold.unfolded_mrf`), interleaved
with the current code in the same process, and prints the ratios.

Usage::

    python benchmarks/bench_mrf_speed.py [--quick] [--json PATH] [--threads 1]
        [--epochs 5] [--n-latent 0 16] [--baseline REF]

``--quick`` (CI: ``--quick --json PATH``) uses 1 epoch, 600 training and 1 000
test images, no latent units.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

import sklearn_unfold.unfolded_mrf as unfolded_mrf
from sklearn_unfold.unfolded_mrf import UnfoldedBP, UnfoldedMeanField

from mrf_denoising import _timed, recipe, time_predict  # benchmarks/ is sys.path[0]

NOISE = 0.2
SEED = 0
N_LAYERS = 10
PACKAGE = "sklearn_unfold._mrf"


def make_data(n_train, n_test, noise=NOISE, seed=SEED):
    """Noisy/clean 16x16 digits (2x2-block upsampled), ``X`` float32."""
    digits = load_digits()
    clean = (digits.data >= 8).astype(np.int64).reshape(-1, 8, 8)
    clean = np.kron(clean, np.ones((1, 2, 2), dtype=np.int64)).reshape(clean.shape[0], -1)
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, clean.shape[0], n_train + n_test)
    Y = clean[idx]
    X = np.where(rng.rand(*Y.shape) < noise, 1 - Y, Y).astype(np.float32)
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


def _from_mrf():
    """Names of :mod:`sklearn_unfold.unfolded_mrf` bound to ``sklearn_unfold._mrf`` modules or objects."""
    found = {}
    for name, value in vars(unfolded_mrf).items():
        module = value.__name__ if isinstance(value, type(sys)) else getattr(value, "__module__", None)
        if isinstance(module, str) and module.startswith(PACKAGE + "."):
            found[name] = (module[len(PACKAGE) + 1:], None if isinstance(value, type(sys)) else value.__name__)
    return found


def load_baseline(ref):
    """``sklearn_unfold._mrf`` at git ``ref`` as a temporary package.

    Returns the replacements for every name :mod:`sklearn_unfold.unfolded_mrf`
    takes from ``sklearn_unfold._mrf`` (modules and functions alike).
    """
    root = Path(__file__).resolve().parents[1]
    folder = Path(tempfile.mkdtemp(prefix="mrf_baseline_"))
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", ref, "sklearn_unfold/_mrf/"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout.split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(["git", "show", f"{ref}:{name}"], cwd=root, check=True,
                                  capture_output=True, text=True).stdout
            (folder / Path(name).name).write_text(text)
    package = "sklearn_unfold._mrf_baseline"
    spec = importlib.util.spec_from_file_location(
        package, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    replacements = {}
    for name, (sub, attr) in _from_mrf().items():
        base = importlib.import_module(f"{package}.{sub}")
        replacements[name] = base if attr is None else getattr(base, attr)
    return replacements


class _Patched:
    """Context manager: the estimator module uses ``names`` (None: unchanged)."""

    def __init__(self, names):
        self.names = names or {}

    def __enter__(self):
        self.saved = {name: getattr(unfolded_mrf, name) for name in self.names}
        for name, value in self.names.items():
            setattr(unfolded_mrf, name, value)

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            setattr(unfolded_mrf, name, value)


def make_estimator(cls, epochs, n_latent):
    """mrf_denoising.py's recipe at K = N_LAYERS, stopping after ``epochs`` epochs."""
    return recipe(cls, N_LAYERS, epochs, n_latent=n_latent, n_iter_no_change=epochs + 1)


def time_estimator(cls, data, epochs, n_latent, repeats, names=None):
    X_train, Y_train, X_test, Y_test = data
    est = make_estimator(cls, epochs, n_latent)
    with _Patched(names), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, fit_wall, fit_cpu = _timed(lambda: est.fit(X_train, Y_train))
        pred, images_per_s, images_per_s_cpu = time_predict(est.predict, X_test, repeats)
        proba = est.predict_proba(X_test)
    return {
        "fit_seconds": fit_wall,
        "fit_cpu_seconds": fit_cpu,
        "epochs": est.n_iter_,
        "epoch_seconds": fit_wall / est.n_iter_,
        "epoch_cpu_seconds": fit_cpu / est.n_iter_,
        "images_per_s": images_per_s,
        "images_per_s_cpu": images_per_s_cpu,
        "test_error": float(np.mean(pred != Y_test)),
        "_proba": proba,
    }


def time_mlp(data, repeats, hidden=512):
    X_train, Y_train, X_test, Y_test = data
    mlp = MLPClassifier((hidden,), max_iter=3, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_train, Y_train)
    _, images_per_s, images_per_s_cpu = time_predict(mlp.predict, X_test, repeats)
    return {"images_per_s": images_per_s, "images_per_s_cpu": images_per_s_cpu}


def run(quick=False, threads=1, epochs=None, n_latents=(0,), repeats=None, baseline=None,
        n_train=None, n_test=None, verbose=True):
    epochs = epochs or (1 if quick else 5)
    repeats = repeats or (3 if quick else 5)
    n_train = n_train or (600 if quick else 2455)
    n_test = n_test or 1000
    data = make_data(n_train, n_test)
    base_names = load_baseline(baseline) if baseline else None
    result = {
        "benchmark": "bench_mrf_speed",
        "quick": quick,
        "threads": threads,
        "n_layers": N_LAYERS,
        "epochs": epochs,
        "n_train": n_train,
        "n_test": n_test,
        "image_shape": [16, 16],
        "baseline": baseline,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "loadavg_start": list(os.getloadavg()),
        "rows": [],
    }
    say = print if verbose else (lambda *a, **k: None)
    say(f"threads={threads}  K={N_LAYERS}  epochs={epochs}  n_train={n_train}  n_test={n_test}  "
        f"OPENBLAS_CORETYPE={result['openblas_coretype']}  load average {os.getloadavg()}")
    header = (f"{'method':<18} {'n_latent':>8} {'code':>8}  {'fit s':>7} {'fit cpu':>7} "
              f"{'s/epoch':>8} {'cpu/ep':>7}  {'img/s':>8} {'img/s cpu':>9}  {'error %':>7}")
    say(header + "\n" + "-" * len(header))
    with threadpool_limits(threads):
        for n_latent in n_latents:
            for cls in (UnfoldedMeanField, UnfoldedBP):
                versions = [("current", None)] + ([("baseline", base_names)] if base_names else [])
                measured = {}
                for code, names in versions:  # interleaved: current then baseline
                    row = time_estimator(cls, data, epochs, n_latent, repeats, names)
                    measured[code] = row
                    row.update(method=cls.__name__, n_latent=n_latent, code=code)
                    say(f"{row['method']:<18} {n_latent:>8} {code:>8}  {row['fit_seconds']:>7.2f} "
                        f"{row['fit_cpu_seconds']:>7.2f} {row['epoch_seconds']:>8.3f} "
                        f"{row['epoch_cpu_seconds']:>7.3f}  {row['images_per_s']:>8.0f} "
                        f"{row['images_per_s_cpu']:>9.0f}  {100 * row['test_error']:>7.2f}")
                if "baseline" in measured:
                    cur, old = measured["current"], measured["baseline"]
                    diff = np.max(np.abs(cur["_proba"] - old["_proba"]))
                    ratios = {
                        "fit_speedup": old["fit_seconds"] / cur["fit_seconds"],
                        "fit_cpu_speedup": old["fit_cpu_seconds"] / cur["fit_cpu_seconds"],
                        "predict_speedup": cur["images_per_s"] / old["images_per_s"],
                        "predict_cpu_speedup": cur["images_per_s_cpu"] / old["images_per_s_cpu"],
                        "max_abs_proba_difference": float(diff),
                    }
                    cur.update(ratios)
                    say(f"{'':<18} {'':>8} {'ratio':>8}  fit x{ratios['fit_speedup']:.2f} "
                        f"(cpu x{ratios['fit_cpu_speedup']:.2f}), predict x{ratios['predict_speedup']:.2f} "
                        f"(cpu x{ratios['predict_cpu_speedup']:.2f}), max |proba diff| {diff:.2e}")
                for row in measured.values():
                    row.pop("_proba")
                    result["rows"].append(row)
        mlp = time_mlp(data, repeats)
    result["mlp_images_per_s"] = mlp["images_per_s"]
    result["mlp_images_per_s_cpu"] = mlp["images_per_s_cpu"]
    say(f"{'MLPClassifier(512)':<18} {'':>8} {'':>8}  {'':>7} {'':>7} {'':>8} {'':>7}  "
        f"{mlp['images_per_s']:>8.0f} {mlp['images_per_s_cpu']:>9.0f}")
    for row in result["rows"]:
        row["predict_vs_mlp"] = row["images_per_s"] / mlp["images_per_s"]
        # Projected fit time of a full run at 2 455 images and 60 epochs (goal: <= 60 s).
        row["fit_60_epochs_2455_seconds_projected"] = row["epoch_seconds"] * 60 * 2455 / n_train
    result["loadavg_end"] = list(os.getloadavg())
    say(f"load average at the end {tuple(result['loadavg_end'])}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, fast run for CI")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (threadpoolctl)")
    parser.add_argument("--epochs", type=int, help="epochs per fit (5; quick: 1)")
    parser.add_argument("--n-latent", type=int, nargs="+", default=[0], help="n_latent values")
    parser.add_argument("--n-train", type=int, help="training images (2455; quick: 600)")
    parser.add_argument("--n-test", type=int, help="test images for predict (1000)")
    parser.add_argument("--repeats", type=int, help="predict repeats, best kept (5; quick: 3)")
    parser.add_argument("--baseline", metavar="REF", help="also time sklearn_unfold/_mrf at git REF")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, threads=args.threads, epochs=args.epochs,
                 n_latents=tuple(args.n_latent), repeats=args.repeats, baseline=args.baseline,
                 n_train=args.n_train, n_test=args.n_test)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
