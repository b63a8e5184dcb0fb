"""Table 2 of the paper on real speech: SNMF / DNMF / deep NMF vs the baselines a user would pick.

Protocol (foundation issue; the private :mod:`sklearn_unfold._protocol`): sparse-NMF bases and discriminative
layers trained on a seeded subset of frames of the training mixtures (training utterances x four
music tracks x six SNRs); tested on 40 unseen utterances x 6 input SNRs against an unseen music track;
metric = BSS-Eval SDR of the resynthesized speech waveform, with PESQ (narrow-band, 8 kHz) and
STOI of the same waveforms, averaged over the test files, when the extra ``speech`` is installed
(``pip install "sklearn_unfold[speech]"``; the columns are skipped with a message otherwise).

Rows: K = 4 and K = 25 with C = 0 (SNMF), 1 (DNMF), 2, 3, 4 trained layers, R = 100 bases per source
(one set of sparse-NMF bases shared by all rows); ``sklearn.decomposition.NMF`` bases (KL, same
context and R) + the same Wiener filter; an ``MLPRegressor`` mask network (paper sec. 5.2: log-magnitude
context input, tanh hidden layers). MLPRegressor takes per-frame but not per-element weights, so the
paper's objective ``sum (mask * m - s)^2 = sum m^2 (mask - s / m)^2`` is approximated by the ratio-mask
target ``min(s / m, 1)`` with frames weighted by the mixture's energy.

    python benchmarks/speech_enhancement.py [--quick] [--json PATH] [--png PATH]
"""

import argparse
import importlib
import json
import time
import warnings

import numpy as np
from sklearn.decomposition import NMF, non_negative_factorization
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from sklearn_unfold import DeepNMF
from sklearn_unfold.audio import SAMPLE_RATE
from sklearn_unfold.datasets import DEFAULT_SNRS
from sklearn_unfold.metrics import pesq, stoi, target_frames
from sklearn_unfold._protocol import evaluate, format_table, input_sdrs, make_test_set, make_training_set, per_snr


def wiener_speech(X_target, W_speech, W_noise, H_speech, H_noise):
    """Eq. 34 for source 0 with single-frame bases."""
    speech = H_speech @ W_speech
    total = speech + H_noise @ W_noise
    return X_target * speech / np.maximum(total, np.finfo(total.dtype).tiny)


def sklearn_nmf_row(X, Y, test, R, T, max_iter):
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


def mlp_row(X, Y, hidden, max_iter, T):
    """MLPRegressor mask network on log-magnitude context features (paper sec. 5.2)."""
    start = time.perf_counter()
    F = X.shape[1] // T
    tiny = 1e-6
    mixture = X[:, -F:]
    speech = target_frames(Y, 2, F)[:, :F]
    mask = np.minimum(speech / np.maximum(mixture, tiny), 1.0)
    energy = np.sum(mixture.astype(np.float64) ** 2, axis=1)
    weights = energy / energy.mean()
    inputs = np.log(X + tiny)
    mean, std = inputs.mean(axis=0), inputs.std(axis=0) + 1e-3
    mlp = MLPRegressor(
        hidden_layer_sizes=hidden, activation="tanh", max_iter=max_iter, early_stopping=True, random_state=0
    )
    mlp.fit((inputs - mean) / std, mask, sample_weight=weights)
    fit_seconds = time.perf_counter() - start

    def predict(X_test):
        m = np.clip(mlp.predict((np.log(X_test + tiny) - mean) / std), 0.0, 1.0)
        return m * X_test[:, -F:]

    n_params = int(sum(c.size for c in mlp.coefs_) + sum(b.size for b in mlp.intercepts_))
    return predict, fit_seconds, n_params


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: small sizes, K = 4, C <= 2")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--png", help="write a plot of SDR vs input SNR here")
    args = parser.parse_args(argv)
    if args.quick:
        sizes = dict(R=20, frames=2000, train_utts=8, test_utts=4, Ks=[4], Cs=[0, 1, 2], max_iter=20,
                     mlp=(64, 64), mlp_iter=30, bases_iter=30, nmf_iter=50)
    else:
        sizes = dict(R=100, frames=10000, train_utts=None, test_utts=40, Ks=[4, 25], Cs=[0, 1, 2, 3, 4],
                     max_iter=100, mlp=(1024, 1024, 1024), mlp_iter=100, bases_iter=100, nmf_iter=200)
    T, R = 9, sizes["R"]
    warnings.simplefilter("ignore", ConvergenceWarning)
    t0 = time.perf_counter()
    X, Y, _ = make_training_set(n_utterances=sizes["train_utts"], n_frames=sizes["frames"])
    test = make_test_set(n_utterances=sizes["test_utts"])
    print(f"data: {X.shape[0]} training frames, {len(test.mixtures)} test mixtures ({time.perf_counter() - t0:.1f} s)", flush=True)
    missing = speech_metrics_missing()
    if missing:
        print(f"PESQ and STOI columns skipped: {missing}", flush=True)

    rows = [add_speech_quality(
        {"method": "Mixture (no processing)", "per_snr": per_snr(input_sdrs(test), test),
         "n_layers": None, "n_trained_layers": None, "n_params": None, "n_trained": None, "fit_seconds": 0.0},
        test, [m.mixture for m in test.mixtures], missing)]
    start = time.perf_counter()
    base = DeepNMF(n_components=R, n_layers=1, n_trained_layers=0, sparsity=1.0,
                   bases_max_iter=sizes["bases_iter"], random_state=0).fit(X, Y)
    bases_seconds = time.perf_counter() - start
    print(f"sparse NMF bases: {bases_seconds:.1f} s", flush=True)
    for K in sizes["Ks"]:
        for C in sizes["Cs"]:
            start = time.perf_counter()
            model = DeepNMF(n_components=R, n_layers=K, n_trained_layers=C, sparsity=1.0,
                            max_iter=sizes["max_iter"], bases=base.bases_, random_state=0).fit(X, Y)
            fit_seconds = time.perf_counter() - start + bases_seconds
            sdrs, infer_seconds, estimates = evaluate(lambda X_: model.predict(X_)[:, : model.n_frequencies_], test)
            label = {0: " (SNMF)", 1: " (DNMF)"}.get(C, "")
            print(f"  K={K:2d} C={C}: {sdrs.mean():6.2f} dB  fit {fit_seconds:6.1f} s  ({model.n_iter_} updates)", flush=True)
            rows.append(add_speech_quality(
                {"method": f"DeepNMF K={K}, C={C}{label}", "per_snr": per_snr(sdrs, test),
                 "n_layers": K, "n_trained_layers": C, "n_params": model.n_params_["total"],
                 "n_trained": model.n_params_["trained"], "fit_seconds": fit_seconds,
                 "infer_seconds": infer_seconds},
                test, estimates, missing))
    for name, builder in [
        ("sklearn NMF + Wiener", lambda: sklearn_nmf_row(X, Y, test, R, T, sizes["nmf_iter"])),
        (f"MLPRegressor mask {'x'.join(map(str, sizes['mlp']))}", lambda: mlp_row(X, Y, sizes["mlp"], sizes["mlp_iter"], T)),
    ]:
        predict, fit_seconds, n_params = builder()
        sdrs, infer_seconds, estimates = evaluate(predict, test)
        print(f"  {name}: {sdrs.mean():6.2f} dB  fit {fit_seconds:6.1f} s", flush=True)
        rows.append(add_speech_quality(
            {"method": name, "per_snr": per_snr(sdrs, test), "n_layers": None, "n_trained_layers": None,
             "n_params": n_params, "n_trained": n_params if "MLP" in name else None,
             "fit_seconds": fit_seconds, "infer_seconds": infer_seconds},
            test, estimates, missing))

    print()
    table_rows = [dict(r, name=r["method"]) for r in rows]
    quality = () if missing else (("pesq", "PESQ", "{:.2f}"), ("stoi", "STOI", "{:.3f}"))
    print(format_table(table_rows, extra=quality + (("n_trained", "P_D", "{:,}"), ("n_params", "P", "{:,}"),
                                                    ("fit_seconds", "fit [s]", "{:.1f}"))))
    if quality:
        print("PESQ (narrow-band MOS-LQO) and STOI: means over all test files.")
    else:
        print(f"PESQ and STOI columns skipped: {missing}")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    if args.json:
        records = []
        for r in rows:
            quality = {}
            for key in ("pesq", "stoi"):
                # Per input SNR, then the mean over all test files (the table's column); None when skipped.
                quality[key] = [None] * (len(DEFAULT_SNRS) + 1) if r[key] is None else [
                    round(float(v), 4) for v in r[f"{key}_per_snr"] + [r[key]]]
            for i, (snr, value) in enumerate(zip(list(DEFAULT_SNRS) + ["avg"], r["per_snr"] + [float(np.mean(r["per_snr"]))])):
                records.append({"method": r["method"], "n_layers": r["n_layers"], "n_trained_layers": r["n_trained_layers"],
                                "input_snr": snr, "sdr": round(float(value), 4),
                                "pesq": quality["pesq"][i], "stoi": quality["stoi"][i], "n_params": r["n_params"],
                                "fit_seconds": round(float(r["fit_seconds"]), 3)})
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 5))
        for r in rows:
            ax.plot(DEFAULT_SNRS, r["per_snr"], marker="o", label=r["method"])
        ax.set(xlabel="input SNR [dB]", ylabel="SDR [dB]", title="Speech enhancement on real speech + unseen music")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
    return rows


if __name__ == "__main__":
    main()
