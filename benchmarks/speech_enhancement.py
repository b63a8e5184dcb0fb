"""Speech enhancement on real speech: DeepNMF vs the paper's DNN, every hyper-parameter chosen on training utterances.

Protocol (the private :mod:`sklearn_unfold._protocol`): sparse-NMF bases, trained layers and DNN
weights are learned on a seeded subset of frames of the training mixtures (299 training
utterances x four music tracks x six SNRs: 699 216 frames in all); the test set is 40 unseen
utterances x 6 input SNRs against an unseen music track (240 mixtures). Metric: BSS-Eval SDR of
the resynthesized speech waveform (mixture phase), with PESQ (narrow-band, 8 kHz) and STOI of the
same waveforms when the extra ``speech`` is installed (``pip install "sklearn_unfold[speech]"``;
the columns are skipped with a message otherwise).

Selection without peeking (issue 12). Every hyper-parameter is chosen on the training frames
only, by ``GridSearchCV(cv=GroupKFold(3), scoring=sdr_scorer)`` (the magnitude SDR of the speech
target frame) with the frames grouped by utterance, so an utterance at its six SNRs never
straddles a split; ``groups`` also reach the estimators' ``fit`` (metadata routing) for their
early stopping. The chosen values are printed, and the test set is scored once per row:

- DeepNMF: a coordinate search in three ``GridSearchCV`` stages, each keeping what the previous
  ones chose: (1) sparsity in {0.3, 1, 3, 10, 30} at R = 100, K = 25, C = 1; (2) R in {50, 100}
  (R at most 100 keeps the paper's budget of parameters);
  (3) K in {4, 25} x C in {1, 2, 3}. The number of multiplicative back-propagation updates
  (at most 300) is chosen by early stopping on held-out training utterances. Sparse-NMF bases
  dominate the cost of a fit and depend only on the fold's frames, the sparsity and R (not on K
  or C): they are learned once per (fold, sparsity, R) and memoized across the stages
  (``CachedBasesDeepNMF``).
- The DNN of the paper's sec. 5.2 (``benchmarks/_mask_dnn.py``; PyTorch, the optional ``bench``
  extra): standardized log-magnitude context input (same T = 9), tanh hidden layers, sigmoid mask
  over the target frame, loss ``sum (mask * m - s)^2``, Adam, Gaussian input noise 0.1. Its size
  among the paper's 3x256, 1x1024, 2x1024 and 2x1536 (Table 1) and its Adam learning rate (1e-3 or 3e-4) by the
  same ``GroupKFold`` search;
  the epochs by early stopping on held-out training utterances. The rows are skipped with a
  message when torch is not installed.

Rows: the mixture; two oracle upper bounds from the test speech (ideal ratio mask
``min(|S|, |M|)``, ideal phase-sensitive mask); the CV-chosen DeepNMF, and sparse NMF (C = 0) with
its bases and K; ``sklearn.decomposition.NMF`` bases (KL, same context and the chosen R) + the
same Wiener filter; the CV-chosen DNN. Beyond the paper, with the chosen hyper-parameters:

- the phase-sensitive target ``clip(|S| cos(angle S - angle M), 0, |M|)`` instead of ``|S|``
  (the same frames; DeepNMF keeps the bases of its magnitude model and retrains its layers);
- more training frames: 30 000 instead of 10 000 (new bases for DeepNMF). The default 10 000 frames
  are 1.4 % of the 699 216 (the paper used 10 % of its training utterances). All of them would be
  9.7 GB of float32 features (X and Y) and, at the measured costs (sparse-NMF bases ~85 s, a
  2x1024 DNN epoch ~2.6 s per 10 000 frames, both linear in the frames), hours on two cores: not
  in this benchmark's hour.

Cost: about 50-60 minutes on a shared 2-core machine with the defaults (every stage prints its
time; ``--plan`` prints the grids and fit counts). Threads are pinned to 1 (``--threads``): with two
BLAS/torch threads on the shared machine, fits were measured 2-9x slower. ``--folds 1`` (one grouped
hold-out split) roughly halves the search. ``--quick`` runs every stage on a few utterances in
under a minute and checks the DNN's loss and gradients against numpy.

    python benchmarks/speech_enhancement.py [--quick] [--folds N] [--threads N] [--json PATH] [--png PATH]
"""

import argparse
import hashlib
import importlib
import json
import os
import sys
import time
import warnings

import numpy as np
from sklearn import config_context
from sklearn.base import clone
from sklearn.decomposition import NMF, non_negative_factorization
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit
from threadpoolctl import threadpool_limits

from sklearn_unfold import DeepNMF
from sklearn_unfold.audio import SAMPLE_RATE, stft
from sklearn_unfold.datasets import DEFAULT_SNRS
from sklearn_unfold.metrics import pesq, sdr_scorer, stoi
from sklearn_unfold._protocol import evaluate, format_table, input_sdrs, make_test_set, make_training_set, per_snr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _mask_dnn  # noqa: E402  (a private module next to this script)

T = 9

# Sizes of each mode. Grids are lists of values; "dnn_sizes" lists hidden-layer sizes.
CONFIGS = {
    "full": dict(
        train_utts=None, frames=10000, test_utts=40, folds=3,
        sparsities=[0.3, 1.0, 3.0, 10.0, 30.0], R_start=100, Rs=[50, 100], K_start=25, C_start=1,
        Ks=[4, 25], Cs=[1, 2, 3], max_iter=300, n_iter_no_change=10, bases_iter=100, nmf_iter=200,
        dnn_sizes=[(256, 256, 256), (1024,), (1024, 1024), (1536, 1536)], dnn_learning_rates=[1e-3, 3e-4],
        dnn_epochs=100, dnn_patience=5,
        big_frames=30000,
    ),
    "quick": dict(
        train_utts=8, frames=2000, test_utts=4, folds=3,
        sparsities=[0.3, 1.0], R_start=20, Rs=[10, 20], K_start=4, C_start=1,
        Ks=[4], Cs=[1, 2], max_iter=20, n_iter_no_change=3, bases_iter=20, nmf_iter=50,
        dnn_sizes=[(32,), (64, 64)], dnn_learning_rates=[1e-3], dnn_epochs=30, dnn_patience=3,
        big_frames=4000,
    ),
}


# ------------------------------------------------------------------ DeepNMF with memoized bases
_BASES_CACHE = {}


def _digest(array):
    return hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8), digest_size=16).hexdigest()


class CachedBasesDeepNMF(DeepNMF):
    """DeepNMF whose sparse-NMF bases are memoized across the fits of a grid search.

    The bases depend on the source spectra ``y``, the sparsity, R, beta, ``bases_max_iter`` and
    the random state, not on K or C: a fit with the same of these (e.g. the same CV fold at
    another K) takes them, and the random generator's state after them, from the cache.
    Benchmark-only: it overrides the private hook ``DeepNMF._learn_bases``.
    """

    def _learn_bases(self, y, spec, n_features, dtype, rng, options):
        if self.bases is not None:
            return super()._learn_bases(y, spec, n_features, dtype, rng, options)
        state = rng.get_state()
        key = (
            _digest(y), y.shape, str(y.dtype), n_features, str(np.dtype(dtype)), spec.n_sources, spec.n_components,
            spec.n_context, spec.beta, spec.sparsity, self.bases_max_iter, self.batch_size,
            state[0], _digest(state[1]), state[2:], repr(sorted(options.items())),
        )
        if key not in _BASES_CACHE:
            start = time.perf_counter()
            bases = super()._learn_bases(y, spec, n_features, dtype, rng, options)
            _BASES_CACHE[key] = (bases, rng.get_state(), time.perf_counter() - start)
        bases, after, _ = _BASES_CACHE[key]
        rng.set_state(after)
        return bases.copy()


def bases_seconds():
    """Time spent learning the memoized bases so far."""
    return sum(seconds for _, _, seconds in _BASES_CACHE.values())


# ------------------------------------------------------------------ reference rows
def wiener_speech(X_target, W_speech, W_noise, H_speech, H_noise):
    """Eq. 34 for source 0 with single-frame bases."""
    speech = H_speech @ W_speech
    total = speech + H_noise @ W_noise
    return X_target * speech / np.maximum(total, np.finfo(total.dtype).tiny)


def sklearn_nmf_row(X, Y, R, max_iter):
    """sklearn NMF bases per source on context-stacked spectra, KL inference, Wiener filter."""
    start = time.perf_counter()
    F = X.shape[1] // T
    width = T * F
    bases = []
    for l in range(2):
        nmf = NMF(R, beta_loss="kullback-leibler", solver="mu", init="nndsvda", max_iter=max_iter, random_state=0)
        nmf.fit(Y[:, l * width : (l + 1) * width])
        bases.append(nmf.components_)
    components = np.vstack(bases)
    fit_seconds = time.perf_counter() - start

    def predict(X_test):
        H, _, _ = non_negative_factorization(
            X_test, H=components, n_components=2 * R, update_H=False, init="custom",
            beta_loss="kullback-leibler", solver="mu", max_iter=max_iter,
        )
        target = X_test[:, -F:]
        return wiener_speech(target, components[:R, -F:], components[R:, -F:], H[:, :R], H[:, R:])

    return predict, fit_seconds, int(components.size)


def oracle_predictors(test):
    """Speech estimates from the true test speech: ideal ratio mask and ideal phase-sensitive mask."""
    S = np.concatenate([stft(m.speech) for m in test.mixtures])
    Z = np.concatenate(test.stfts)
    M = np.abs(Z)
    irm = np.minimum(np.abs(S), M)
    psm = np.clip(np.abs(S) * np.cos(np.angle(S) - np.angle(Z)), 0.0, M)
    return {"Oracle ratio mask min(|S|,|M|) (upper bound)": irm,
            "Oracle phase-sensitive mask (upper bound)": psm}


# ------------------------------------------------------------------ PESQ / STOI
def speech_metrics_missing():
    """None when PESQ and STOI can be computed, else why not."""
    for package in ("pesq", "pystoi"):
        try:
            importlib.import_module(package)
        except ImportError as exc:
            return f"{package!r} cannot be imported ({exc}); pip install \"sklearn_unfold[speech]\""
    return None


def speech_quality(test, estimates):
    """PESQ and STOI of every test file's speech estimate; NaN where PESQ refuses a file."""
    pesqs, stois = [], []
    for mix, estimate in zip(test.mixtures, estimates, strict=True):
        try:
            pesqs.append(pesq(mix.speech, estimate, sample_rate=SAMPLE_RATE))
        except ValueError as exc:
            print(f"    PESQ skipped a file: {exc}", flush=True)
            pesqs.append(np.nan)
        stois.append(stoi(mix.speech, estimate, sample_rate=SAMPLE_RATE))
    return np.array(pesqs), np.array(stois)


def add_speech_quality(row, test, estimates, missing):
    """Mean PESQ and STOI over the test files (and per input SNR) into ``row``."""
    if missing:
        row.update(pesq=None, stoi=None, pesq_per_snr=None, stoi_per_snr=None)
        return row
    start = time.perf_counter()
    pesqs, stois = speech_quality(test, estimates)
    levels = np.array([m.snr for m in test.mixtures])
    row.update(
        pesq=float(np.nanmean(pesqs)), stoi=float(np.mean(stois)),
        pesq_per_snr=[float(np.nanmean(pesqs[levels == s])) for s in DEFAULT_SNRS],
        stoi_per_snr=per_snr(stois, test),
    )
    print(f"    PESQ {row['pesq']:.2f}  STOI {row['stoi']:.3f}  ({time.perf_counter() - start:.1f} s)", flush=True)
    return row


# ------------------------------------------------------------------ the benchmark
class Benchmark:
    """Rows of the table, stage timings and the shared test set."""

    def __init__(self, test, missing):
        self.test, self.missing = test, missing
        self.rows, self.stages = [], []

    def stage(self, name, start):
        seconds = time.perf_counter() - start
        self.stages.append((name, seconds))
        print(f"[{name}: {seconds:.1f} s]", flush=True)

    def score(self, method, predict_speech, *, fit_seconds, n_params=None, n_trained=None, params=None):
        """Score one model on the test set (once) and add its row."""
        sdrs, infer_seconds, estimates = evaluate(predict_speech, self.test)
        print(f"  {method}: {sdrs.mean():6.2f} dB  fit {fit_seconds:6.1f} s  infer {infer_seconds:.1f} s", flush=True)
        self.rows.append(add_speech_quality(
            {"method": method, "per_snr": per_snr(sdrs, self.test), "n_params": n_params, "n_trained": n_trained,
             "fit_seconds": fit_seconds, "infer_seconds": infer_seconds, "params": params or {}},
            self.test, estimates, self.missing))

    def score_deep_nmf(self, method, model, fit_seconds):
        params = {k: model.get_params()[k] for k in ("sparsity", "n_components", "n_layers", "n_trained_layers")}
        params["n_iter_"] = int(model.n_iter_)
        self.score(method, lambda X_: model.predict(X_)[:, : model.n_frequencies_], fit_seconds=fit_seconds,
                   n_params=model.n_params_["total"], n_trained=model.n_params_["trained"], params=params)

    def score_dnn(self, method, model, fit_seconds):
        params = {"hidden_layer_sizes": list(model.hidden_layer_sizes), "learning_rate": model.learning_rate,
                  "best_epoch_": int(model.best_epoch_),
                  "n_iter_": int(model.n_iter_)}
        self.score(method, lambda X_: model.predict(X_)[:, : model.n_frequencies_], fit_seconds=fit_seconds,
                   n_params=model.n_params_, n_trained=model.n_params_, params=params)


def print_table(bench):
    """The test table of a Benchmark's rows (with PESQ and STOI columns when they were computed)."""
    rows = [dict(r, name=r["method"]) for r in bench.rows]
    quality = () if bench.missing else (("pesq", "PESQ", "{:.2f}"), ("stoi", "STOI", "{:.3f}"))
    print(format_table(rows, extra=quality + (("n_trained", "P_D", "{:,}"), ("n_params", "P", "{:,}"),
                                              ("fit_seconds", "fit [s]", "{:.1f}"))))
    return rows


def parse_hidden(text):
    """``1024x1024`` -> (1024, 1024), for command lines."""
    try:
        return tuple(int(n) for n in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden layer sizes look like 1024x1024; got {text!r}") from None


def print_search(search, names):
    """The CV table of a GridSearchCV: one line per candidate, the chosen one marked."""
    results = search.cv_results_
    for i, params in enumerate(results["params"]):
        mark = "*" if i == search.best_index_ else " "
        values = ", ".join(f"{n}={_short(params[n])}" for n in names)
        print(f"   {mark} {values:<40} validation SDR {results['mean_test_score'][i]:6.2f} "
              f"+- {results['std_test_score'][i]:.2f} dB  (fit {results['mean_fit_time'][i]:.1f} s/fold)", flush=True)


def make_cv(folds):
    """The splitter of the searches and its description: GroupKFold, or one grouped hold-out split."""
    if folds == 1:
        return (GroupShuffleSplit(n_splits=1, test_size=1 / 3, random_state=0),
                "one grouped hold-out split (1/3 of the training utterances; one fold of GroupKFold(3))")
    return GroupKFold(n_splits=folds), f"{folds}-fold GroupKFold"


def _short(value):
    return "x".join(map(str, value)) if isinstance(value, tuple) else value


def _describe(model):
    return f"K={model.n_layers}, C={model.n_trained_layers}, R={model.n_components}, sparsity={model.sparsity:g}"


def search_deep_nmf(X, Y, groups, cfg, bench):
    """Coordinate search of DeepNMF's hyper-parameters by GroupKFold CV on the training frames."""
    estimator = CachedBasesDeepNMF(
        n_components=cfg["R_start"], n_layers=cfg["K_start"], n_trained_layers=cfg["C_start"], sparsity=1.0,
        max_iter=cfg["max_iter"], early_stopping=True, n_iter_no_change=cfg["n_iter_no_change"],
        bases_max_iter=cfg["bases_iter"], random_state=0,
    ).set_fit_request(groups=True)
    stages = [
        ("sparsity", {"sparsity": cfg["sparsities"]}),
        ("R", {"n_components": cfg["Rs"]}),
        ("K and C", {"n_layers": cfg["Ks"], "n_trained_layers": cfg["Cs"]}),
    ]
    chosen = {}
    for i, (what, grid) in enumerate(stages):
        start = time.perf_counter()
        last = i == len(stages) - 1
        cv, how = make_cv(cfg["folds"])
        search = GridSearchCV(estimator.set_params(**chosen), grid, scoring=sdr_scorer, cv=cv, refit=last,
                              error_score="raise")
        search.fit(X, Y, groups=groups)
        fixed = ", ".join(f"{k}={v}" for k, v in estimator.get_params().items()
                          if k in ("sparsity", "n_components", "n_layers", "n_trained_layers") and k not in grid)
        print(f"  DeepNMF stage {i + 1}: {what} ({fixed}; {how}, magnitude SDR of speech)")
        print_search(search, list(grid))
        chosen.update(search.best_params_)
        bench.stage(f"DeepNMF CV stage {i + 1} ({what})", start)
    model = search.best_estimator_
    best = int(np.argmin(model.validation_loss_curve_))
    print(f"  DeepNMF chosen by CV: {_describe(model)}; refit on all training frames in {search.refit_time_:.1f} s: "
          f"{model.n_iter_} updates (at most {cfg['max_iter']}), the kept layers those after update {best} "
          "(lowest held-out objective)", flush=True)
    return model, search.refit_time_


def search_dnn(X, Y, groups, cfg, bench):
    """The DNN's size and learning rate by GroupKFold CV on the training frames; epochs by early stopping."""
    start = time.perf_counter()
    estimator = _mask_dnn.MaskDNN(
        max_epochs=cfg["dnn_epochs"], n_iter_no_change=cfg["dnn_patience"], n_threads=cfg["threads"], random_state=0,
    ).set_fit_request(groups=True)
    cv, how = make_cv(cfg["folds"])
    grid = {"hidden_layer_sizes": cfg["dnn_sizes"], "learning_rate": cfg["dnn_learning_rates"]}
    search = GridSearchCV(estimator, grid, scoring=sdr_scorer, cv=cv,
                          error_score="raise")
    search.fit(X, Y, groups=groups)
    print(f"  DNN: hidden layers and learning rate ({how}, magnitude SDR of speech; epochs by early stopping)")
    print_search(search, list(grid))
    model = search.best_estimator_
    print(f"  DNN chosen by CV: {_short(model.hidden_layer_sizes)}, Adam learning rate {model.learning_rate:g}, "
          f"{model.n_params_:,} parameters, "
          f"best epoch {model.best_epoch_} of {model.n_iter_}; refit in {search.refit_time_:.1f} s", flush=True)
    bench.stage("DNN CV (size, learning rate)", start)
    return model, search.refit_time_


def fit_timed(model, X, Y, groups):
    start = time.perf_counter()
    model.fit(X, Y, groups=groups)
    return model, time.perf_counter() - start


def training_set(cfg, **kwargs):
    return make_training_set(n_utterances=cfg["train_utts"], n_frames=cfg["frames"], **kwargs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every stage on a few utterances (a few minutes)")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--png", help="write a plot of SDR vs input SNR here")
    parser.add_argument("--folds", type=int, help="GroupKFold splits of the searches (default 3); 1 = one grouped "
                        "hold-out split, about half the time of the full run")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP and torch threads (default 1: on a "
                        "shared 2-core machine 2 threads were measured 2-9x slower)")
    # Hidden: the full run's grids on a few utterances with few iterations, to check its configuration quickly.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plan", action="store_true", help="print the configuration and the number of fits, then stop")
    args = parser.parse_args(argv)
    cfg = dict(CONFIGS["quick" if args.quick else "full"], threads=args.threads)
    if args.smoke:
        cfg.update(train_utts=8, frames=1500, test_utts=2, max_iter=5, bases_iter=5, nmf_iter=5, dnn_epochs=2,
                   big_frames=3000)
    if args.folds is not None:
        if args.folds < 1:
            parser.error(f"--folds must be at least 1; got {args.folds}")
        cfg["folds"] = args.folds
    if args.threads < 1:
        parser.error(f"--threads must be at least 1; got {args.threads}")
    if args.plan:
        print_plan(cfg)
        return []
    with threadpool_limits(cfg["threads"]):
        rows = run(cfg, args)
    if args.json:
        write_json(args.json, rows)
    if args.png:
        write_png(args.png, rows)
    return rows


def run(cfg, args):
    """Every stage of the benchmark; prints the table and returns its rows."""
    warnings.simplefilter("ignore", ConvergenceWarning)
    no_torch = _mask_dnn.torch_missing()
    if no_torch:
        print(f"DNN rows skipped: {no_torch}", flush=True)
    elif args.quick:
        print(f"mask DNN self-check: torch loss and gradients match numpy (relative error {_mask_dnn.self_check():.1e})")
    missing = speech_metrics_missing()
    if missing:
        print(f"PESQ and STOI columns skipped: {missing}", flush=True)
    t0 = start = time.perf_counter()
    X, Y, groups = training_set(cfg)
    test = make_test_set(n_utterances=cfg["test_utts"])
    print(f"data: {X.shape[0]} training frames of {len(np.unique(groups))} utterances, "
          f"{len(test.mixtures)} test mixtures", flush=True)
    bench = Benchmark(test, missing)
    bench.stage("data", start)

    # Reference rows: no processing and the oracle masks.
    start = time.perf_counter()
    bench.rows.append(add_speech_quality(
        {"method": "Mixture (no processing)", "per_snr": per_snr(input_sdrs(test), test), "n_params": None,
         "n_trained": None, "fit_seconds": 0.0, "params": {}}, test, [m.mixture for m in test.mixtures], missing))
    for name, magnitude in oracle_predictors(test).items():
        bench.score(name, lambda X_, magnitude=magnitude: magnitude, fit_seconds=0.0)
    bench.stage("mixture and oracle rows", start)

    with config_context(enable_metadata_routing=True):
        # DeepNMF: chosen by CV on the training frames, then scored once.
        deep, deep_seconds = search_deep_nmf(X, Y, groups, cfg, bench)
        start = time.perf_counter()
        bench.score_deep_nmf(f"DeepNMF {_describe(deep)} (CV)", deep, deep_seconds)
        snmf, snmf_seconds = fit_timed(clone(deep).set_params(n_trained_layers=0, bases=deep.bases_), X, Y, groups)
        bench.score_deep_nmf(f"SNMF K={snmf.n_layers}, R={snmf.n_components}, sparsity={snmf.sparsity:g} (CV bases)",
                             snmf, snmf_seconds)
        bench.stage("DeepNMF test rows", start)

        start = time.perf_counter()
        predict, fit_seconds, n_params = sklearn_nmf_row(X, Y, deep.n_components, cfg["nmf_iter"])
        bench.score(f"sklearn NMF (KL) + Wiener, R={deep.n_components}", predict, fit_seconds=fit_seconds,
                    n_params=n_params, params={"n_components": deep.n_components, "max_iter": cfg["nmf_iter"]})
        bench.stage("sklearn NMF row", start)

        dnn = None
        if not no_torch:
            dnn, dnn_seconds = search_dnn(X, Y, groups, cfg, bench)
            start = time.perf_counter()
            bench.score_dnn(f"DNN {_short(dnn.hidden_layer_sizes)} mask (CV)", dnn, dnn_seconds)
            bench.stage("DNN test row", start)

        # Beyond the paper: the phase-sensitive target (the same frames; X is unchanged).
        start = time.perf_counter()
        Xp, Yp, groups_p = training_set(cfg, target="phase_sensitive")
        assert np.array_equal(Xp, X) and np.array_equal(groups_p, groups), "the phase-sensitive set has other frames"
        del Xp
        model, seconds = fit_timed(clone(deep).set_params(bases=deep.bases_), X, Yp, groups)
        bench.score_deep_nmf(f"DeepNMF {_describe(deep)}, phase-sensitive target", model, seconds)
        if dnn is not None:
            model, seconds = fit_timed(clone(dnn), X, Yp, groups)
            bench.score_dnn(f"DNN {_short(dnn.hidden_layer_sizes)}, phase-sensitive target", model, seconds)
        del Yp
        bench.stage("phase-sensitive target rows", start)

        # Beyond the paper: more training frames for the chosen models.
        start = time.perf_counter()
        big = dict(cfg, frames=cfg["big_frames"])
        Xb, Yb, groups_b = training_set(big)
        share = f"{Xb.shape[0]:,} frames"
        print(f"  more frames: {share} instead of {X.shape[0]:,} (the chosen hyper-parameters; new bases)", flush=True)
        model, seconds = fit_timed(clone(deep), Xb, Yb, groups_b)
        bench.score_deep_nmf(f"DeepNMF {_describe(deep)}, {share}", model, seconds)
        if dnn is not None:
            model, seconds = fit_timed(clone(dnn), Xb, Yb, groups_b)
            bench.score_dnn(f"DNN {_short(dnn.hidden_layer_sizes)}, {share}", model, seconds)
        del Xb, Yb
        bench.stage("more training frames rows", start)

    if no_torch:
        print(f"DNN rows skipped: {no_torch}")
    print()
    print_table(bench)
    print(f"Training: {X.shape[0]:,} frames unless stated. Hyper-parameters chosen by {make_cv(cfg['folds'])[1]} "
          "on training utterances (iterations and epochs by early stopping); the test set was scored once per row.")
    print("P_D: discriminatively trained parameters (DNN: all); fit [s] of the chosen DeepNMF includes its bases.")
    if not missing:
        print("PESQ (narrow-band MOS-LQO) and STOI: means over all test files.")
    else:
        print(f"PESQ and STOI columns skipped: {missing}")
    print("\nstage times: " + "; ".join(f"{name} {seconds:.0f} s" for name, seconds in bench.stages))
    print(f"sparse-NMF bases learned {len(_BASES_CACHE)} times ({bases_seconds():.0f} s)")
    print(f"total {time.perf_counter() - t0:.1f} s ({cfg['threads']} thread(s))")
    return bench.rows


def print_plan(cfg):
    """The grids and how many fits each stage makes."""
    folds = cfg["folds"]
    print(make_cv(folds)[1])
    n_sparsity, n_R, n_KC = len(cfg["sparsities"]), len(cfg["Rs"]), len(cfg["Ks"]) * len(cfg["Cs"])
    print(f"training frames {cfg['frames']}, test utterances {cfg['test_utts']}")
    print(f"DeepNMF stage 1 sparsity {cfg['sparsities']} at R={cfg['R_start']}, K={cfg['K_start']}, C={cfg['C_start']}: "
          f"{n_sparsity * folds} fits, {n_sparsity * folds} bases")
    print(f"DeepNMF stage 2 R {cfg['Rs']}: {n_R * folds} fits, {(n_R - (cfg['R_start'] in cfg['Rs'])) * folds} new bases")
    print(f"DeepNMF stage 3 K {cfg['Ks']} x C {cfg['Cs']}: {n_KC * folds} fits, no new bases; refit: 1 fit, 1 bases")
    n_dnn = len(cfg["dnn_sizes"]) * len(cfg["dnn_learning_rates"])
    print(f"DNN sizes {[_short(s) for s in cfg['dnn_sizes']]} x Adam learning rates {cfg['dnn_learning_rates']}: "
          f"{n_dnn * folds} fits + refit, "
          f"at most {cfg['dnn_epochs']} epochs, patience {cfg['dnn_patience']}")
    print(f"then: SNMF, sklearn NMF, phase-sensitive DeepNMF and DNN, DeepNMF and DNN on {cfg['big_frames']} frames")


def write_json(path, rows):
    records = []
    for r in rows:
        quality = {}
        for key in ("pesq", "stoi"):
            # Per input SNR, then the mean over all test files (the table's column); None when skipped.
            quality[key] = [None] * (len(DEFAULT_SNRS) + 1) if r[key] is None else [
                round(float(v), 4) for v in r[f"{key}_per_snr"] + [r[key]]]
        for i, (snr, value) in enumerate(zip(list(DEFAULT_SNRS) + ["avg"], r["per_snr"] + [float(np.mean(r["per_snr"]))])):
            records.append({"method": r["method"], "hyper_parameters": r["params"], "input_snr": snr,
                            "sdr": round(float(value), 4), "pesq": quality["pesq"][i], "stoi": quality["stoi"][i],
                            "n_params": r["n_params"], "n_trained": r["n_trained"],
                            "fit_seconds": round(float(r["fit_seconds"]), 3)})
    with open(path, "w") as f:
        json.dump(records, f, indent=1)


def write_png(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        ax.plot(DEFAULT_SNRS, r["per_snr"], marker="o", label=r["method"])
    ax.set(xlabel="input SNR [dB]", ylabel="SDR [dB]", title="Speech enhancement on real speech + unseen music")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
