"""The main job: speech enhancement on real recordings, SNMF vs DNMF vs deep NMF.

Run ``python -m sklearn_unfold.demo`` (or ``sklearn-unfold-demo``). It fetches
real speech and music (Debian packages, see :mod:`sklearn_unfold.datasets`),
trains sparse NMF bases for speech and noise on a subset of the training
mixtures' frames, trains the discriminative layers, separates the 240 test
mixtures (40 unseen utterances x 6 input SNRs, unseen noise track) with the
Wiener-like filter of eq. 34, and prints an SDR table laid out like Table 2
of Hershey, Le Roux & Weninger (2014). It writes a PNG (spectrograms and SDR
versus input SNR) and WAV files to listen to into ``--out``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .datasets import DEFAULT_SNRS
from .deep_nmf import DeepNMF
from .separation import evaluate, format_table, input_sdrs, make_test_set, make_training_set, per_snr


def _progress(message, start):
    print(f"[{time.perf_counter() - start:6.1f} s] {message}", flush=True)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m sklearn_unfold.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="sklearn_unfold_demo", help="output directory (PNG, WAVs)")
    parser.add_argument("--n-layers", type=int, default=25, help="K, unfolded iterations (default 25)")
    parser.add_argument("--n-components", type=int, default=100, help="R, bases per source (default 100)")
    parser.add_argument("--sparsity", type=float, default=1.0, help="mu, L1 weight (default 1.0)")
    parser.add_argument(
        "--train-utterances", type=int, default=None, help="training utterances mixed at every SNR (default: all 299)"
    )
    parser.add_argument("--train-frames", type=int, default=10000, help="training frames kept (default 10000)")
    parser.add_argument("--test-utterances", type=int, default=40, help="test utterances (default 40)")
    parser.add_argument("--max-iter", type=int, default=100, help="discriminative updates (default 100)")
    parser.add_argument("--quick", action="store_true", help="a tiny run for smoke tests (not the protocol)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser


def main(argv=None):
    """Run the demo; returns the list of result rows."""
    args = build_parser().parse_args(argv)
    if args.quick:
        args.n_layers, args.n_components, args.train_utterances = 4, 20, 8
        args.train_frames, args.test_utterances, args.max_iter = 2000, 4, 10
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _progress("fetching / loading real speech and music (Debian packages, cached after the first run)", start)
    X, Y, _ = make_training_set(n_utterances=args.train_utterances, n_frames=args.train_frames)
    test = make_test_set(n_utterances=args.test_utterances)
    _progress(
        f"training: {X.shape[0]} frames of {X.shape[1]} features; test: {len(test.mixtures)} mixtures, "
        f"{test.X.shape[0]} frames",
        start,
    )
    K, R, F = args.n_layers, args.n_components, 129
    common = dict(n_components=R, n_layers=K, sparsity=args.sparsity, max_iter=args.max_iter, random_state=0)
    rows = [{"name": "Mixture (no processing)", "per_snr": per_snr(input_sdrs(test), test)}]
    models = {}
    bases = None
    for C, label in [(0, "SNMF"), (1, "DNMF"), (2, "")]:
        name = f"K = {K}, C = {C}" + (f" ({label})" if label else "")
        t0 = time.perf_counter()
        model = DeepNMF(n_trained_layers=C, bases=bases, **common).fit(X, Y)
        fit_seconds = time.perf_counter() - t0
        if bases is None:
            bases = model.bases_
            _progress(f"sparse NMF bases trained for speech and noise ({fit_seconds:.1f} s)", start)
        else:
            _progress(f"{name}: {model.n_iter_} multiplicative back-propagation updates ({fit_seconds:.1f} s)", start)
        sdrs, seconds, estimates = evaluate(lambda X_: model.predict(X_)[:, :F], test)
        _progress(f"{name}: test SDR {sdrs.mean():.2f} dB (inference {seconds:.1f} s)", start)
        rows.append(
            {
                "name": name,
                "per_snr": per_snr(sdrs, test),
                "n_trained": C * F * 2 * R if C else None,
                "n_params": model.n_params_["total"],
                "fit_seconds": fit_seconds,
            }
        )
        models[name] = (model, sdrs, estimates)
    print()
    print(format_table(rows, extra=(("n_trained", "P_D", "{:,}"), ("n_params", "P", "{:,}"))))
    print()
    _write_outputs(out, test, rows, models, args.no_plot)
    _progress(f"done; outputs in {out}/", start)
    return rows


def _write_outputs(out, test, rows, models, no_plot):
    from scipy.io import wavfile

    # One test utterance at 0 dB input SNR to look at and listen to.
    index = next(i for i, m in enumerate(test.mixtures) if m.snr == 0)
    mix = test.mixtures[index]
    names = list(models)
    peak = max(np.abs(mix.mixture).max(), 1e-9)

    def save(path, x):
        wavfile.write(out / path, 8000, np.round(np.clip(x / peak, -1, 1) * 32767).astype(np.int16))

    save("mixture.wav", mix.mixture)
    save("clean_speech.wav", mix.speech)
    for name in (names[0], names[-1]):
        tag = name.split("(")[-1].strip(")") if "(" in name else name.replace(" ", "").replace(",", "_").replace("=", "")
        save(f"estimate_{tag}.wav", models[name][2][index])
    print(f"WAV files: {', '.join(sorted(p.name for p in out.glob('*.wav')))}")
    if no_plot:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'sklearn_unfold[examples]'): no PNG written.")
        return
    from .audio import stft

    best = names[-1]
    spectra = [
        ("Mixture (0 dB)", mix.mixture),
        ("Clean speech", mix.speech),
        (f"Estimate, {best}", models[best][2][index]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (title, x) in zip(axes.flat, spectra):
        S = 20 * np.log10(np.abs(stft(x)).T + 1e-6)
        ax.imshow(S, origin="lower", aspect="auto", vmin=S.max() - 80, vmax=S.max(), cmap="magma",
                  extent=[0, x.shape[0] / 8000, 0, 4000])
        ax.set(title=title, xlabel="time [s]", ylabel="frequency [Hz]")
    ax = axes.flat[3]
    for r in rows:
        ax.plot(DEFAULT_SNRS, r["per_snr"], marker="o", label=r["name"])
    ax.set(title="SDR vs input SNR (240 test mixtures)", xlabel="input SNR [dB]", ylabel="SDR [dB]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "demo.png", dpi=100)
    plt.close(fig)
    print(f"plot: {out / 'demo.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
