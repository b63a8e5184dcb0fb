"""The main job: speech enhancement on real recordings, SNMF vs DNMF vs deep NMF.

Run ``python -m sklearn_unfold.demo`` (or ``sklearn-unfold-demo``). It fetches
real speech and music (Debian packages, see :mod:`sklearn_unfold.datasets`),
trains sparse NMF bases for speech and noise on a subset of the training
mixtures' frames, trains the discriminative layers, separates the test
mixtures (by default 240: 40 unseen utterances x 6 input SNRs, unseen noise
track) with the Wiener-like filter of eq. 34, and prints an SDR table laid out
like Table 2 of Hershey, Le Roux & Weninger (2014). It writes a PNG
(spectrograms and SDR versus input SNR) and WAV files to listen to into
``--out``.

Every argument is checked before any data is read. Exit status: 0 done,
1 failed (data or outputs), 2 bad arguments, 130 interrupted (Ctrl-C, in any
phase: the demo never reports a model whose training was cut short). Errors
are one line on stderr, without a traceback (for audio that cannot be fetched,
followed by the commands to install it by hand).
"""

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._files import writable_dir_problem
from ._protocol import (
    N_UTTERANCES,
    evaluate,
    format_table,
    input_sdrs,
    make_test_set,
    make_training_set,
    per_snr,
)
from .datasets import DEFAULT_SNRS
from .deep_nmf import DeepNMF
from .exceptions import FitInterruptedWarning

PROG = "sklearn-unfold-demo"

# Trained layers of the three models compared (SNMF, DNMF, deep NMF); the
# deepest needs n_layers >= its C.
_MODELS = ((0, "SNMF"), (1, "DNMF"), (2, ""))

# The paper's protocol, and the tiny --quick run. Options given explicitly on
# the command line override either preset.
_PRESETS = {
    "full": dict(n_layers=25, n_components=100, train_utterances=None, train_frames=10000, test_utterances=40,
                 max_iter=100),
    "quick": dict(n_layers=4, n_components=20, train_utterances=8, train_frames=2000, test_utterances=4,
                  max_iter=10),
}


def _progress(message, start):
    print(f"[{time.perf_counter() - start:6.1f} s] {message}", flush=True)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _integer(low, high=None, why=""):
    """argparse type: an int in [low, high]; ``why`` says where a bound comes from."""
    bounds = f">= {low}" if high is None else f"between {low} and {high}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {bounds}{why}; got {value}")
        return value

    return parse


def _non_negative_float(text):
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text}")
    return value


def build_parser():
    """The demo's command-line parser.

    Options that --quick presets default to None here; :func:`parse_args`
    fills them in from the preset, so an explicit value always wins.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    full, quick = _PRESETS["full"], _PRESETS["quick"]

    def default(key):
        return f"default {full[key] if full[key] is not None else 'all'}, {quick[key]} with --quick"

    n_min_layers = max(c for c, _ in _MODELS)
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="sklearn_unfold_demo", help="output directory (PNG, WAVs)")
    parser.add_argument(
        "--n-layers",
        type=_integer(n_min_layers, why=f" (the deepest model trains {n_min_layers} layers)"),
        help=f"K, unfolded iterations ({default('n_layers')})",
    )
    parser.add_argument("--n-components", type=_integer(1), help=f"R, bases per source ({default('n_components')})")
    sparsity = DeepNMF().sparsity  # the library's default, chosen by cross-validation on training utterances
    parser.add_argument("--sparsity", type=_non_negative_float, default=sparsity,
                        help=f"mu, L1 weight (default {sparsity:g})")
    parser.add_argument(
        "--train-utterances",
        type=_integer(1, N_UTTERANCES["train"], why=" (the training utterances of the protocol)"),
        help=f"training utterances mixed at every SNR, at most {N_UTTERANCES['train']} "
        f"({default('train_utterances')})",
    )
    parser.add_argument(
        "--train-frames", type=_integer(1), help=f"training frames kept ({default('train_frames')})"
    )
    parser.add_argument(
        "--test-utterances",
        type=_integer(1, N_UTTERANCES["test"], why=" (the test utterances of the protocol)"),
        help=f"test utterances, each at {len(DEFAULT_SNRS)} SNRs, at most {N_UTTERANCES['test']} "
        f"({default('test_utterances')})",
    )
    parser.add_argument("--max-iter", type=_integer(0), help=f"discriminative updates ({default('max_iter')})")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run for smoke tests (not the protocol); explicit options win"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return parser


def parse_args(argv=None):
    """Parse and check every argument before any data work.

    Fills in the preset (--quick or the protocol) where an option was not
    given and creates the output directory. A bad argument exits with status 2
    and one line on stderr.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    args : argparse.Namespace
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in _PRESETS["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    out = Path(args.out)
    # Checked now rather than when the outputs are written, after minutes of work.
    problem = writable_dir_problem(out)
    if problem:
        parser.error(f"argument --out: {problem}")
    args.out = out
    return args


def run(args):
    """Prepare the data, fit the three models, print the table, write the outputs.

    Parameters
    ----------
    args : argparse.Namespace
        As returned by :func:`parse_args`.

    Returns
    -------
    rows : list of dict
        One per table row: ``"name"``, ``"per_snr"`` and, for the models,
        ``"n_trained"``, ``"n_params"``, ``"fit_seconds"``.
    """
    start = time.perf_counter()
    K, R = args.n_layers, args.n_components
    _progress(
        f"K = {K}, R = {R}, mu = {args.sparsity:g}, {args.max_iter} updates; "
        f"{args.test_utterances} test utterances; "
        f"fetching / loading real speech and music (Debian packages, cached after the first run)",
        start,
    )
    # The test set first: it is the quicker to build (64 utterances, not 299),
    # so a damaged cache with fewer test utterances than asked fails before
    # the long training-set work.
    test = make_test_set(n_utterances=args.test_utterances)
    X, Y, _ = make_training_set(n_utterances=args.train_utterances, n_frames=args.train_frames)
    _progress(
        f"training: {X.shape[0]} frames of {X.shape[1]} features; test: {len(test.mixtures)} mixtures, "
        f"{test.X.shape[0]} frames",
        start,
    )
    common = dict(n_components=R, n_layers=K, sparsity=args.sparsity, max_iter=args.max_iter, random_state=0)
    rows = [{"name": "Mixture (no processing)", "per_snr": per_snr(input_sdrs(test), test)}]
    models = {}
    bases = None
    for C, label in _MODELS:
        name = f"K = {K}, C = {C}" + (f" ({label})" if label else "")
        t0 = time.perf_counter()
        model = DeepNMF(n_trained_layers=C, bases=bases, **common).fit(X, Y)
        fit_seconds = time.perf_counter() - t0
        if bases is None:
            bases = model.bases_
            _progress(f"sparse NMF bases trained for speech and noise ({fit_seconds:.1f} s)", start)
        else:
            _progress(f"{name}: {model.n_iter_} multiplicative back-propagation updates ({fit_seconds:.1f} s)", start)
        # The speech estimate is the first n_frequencies_ columns of predict.
        F = model.n_frequencies_
        sdrs, seconds, estimates = evaluate(lambda X_, model=model, F=F: model.predict(X_)[:, :F], test)
        _progress(f"{name}: test SDR {sdrs.mean():.2f} dB (inference {seconds:.1f} s)", start)
        rows.append(
            {
                "name": name,
                "per_snr": per_snr(sdrs, test),
                "n_trained": model.n_params_["trained"] if C else None,
                "n_params": model.n_params_["total"],
                "fit_seconds": fit_seconds,
            }
        )
        models[name] = (model, sdrs, estimates)
    print()
    print(format_table(rows, extra=(("n_trained", "P_D", "{:,}"), ("n_params", "P", "{:,}"))))
    print()
    _write_outputs(args.out, test, rows, models, args.no_plot)
    _progress(f"done; outputs in {args.out}/", start)
    return rows


def main(argv=None):
    """Run the demo from the command line (the ``sklearn-unfold-demo`` entry point).

    Fits run with :class:`~sklearn_unfold.exceptions.FitInterruptedWarning`
    turned into an error, so Ctrl-C stops the demo in every phase instead of
    letting a fit keep a truncated model that would be reported as a result.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 done, 1 failed (data or outputs: the message on stderr), 130
        interrupted. Bad arguments raise ``SystemExit(2)`` from argparse.
    """
    args = parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FitInterruptedWarning)
            run(args)
    except (KeyboardInterrupt, FitInterruptedWarning):
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    except (OSError, ValueError) as exc:
        # Data that cannot be fetched or mixed, outputs that cannot be written.
        # A DataFetchError's message goes on with the commands to fetch by hand.
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


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
    ax.set(
        title=f"SDR vs input SNR ({len(test.mixtures)} test mixtures)", xlabel="input SNR [dB]", ylabel="SDR [dB]"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "demo.png", dpi=100)
    plt.close(fig)
    print(f"plot: {out / 'demo.png'}")


if __name__ == "__main__":
    sys.exit(main())
