"""The ``sklearn-unfold`` command: train, enhance and evaluate on your own WAV files.

Subcommands::

    sklearn-unfold train --speech DIR --noise DIR [--snrs -5 0 5] [--sample-rate SR] [model options] --out MODEL
    sklearn-unfold train --noisy DIR --clean DIR [--sample-rate SR] [model options] --out MODEL
    sklearn-unfold enhance MODEL IN [IN ...] --out-dir DIR
    sklearn-unfold evaluate MODEL --noisy DIR --clean DIR
    sklearn-unfold demo [demo options]

``train`` fits a :class:`~sklearn_unfold.SpeechEnhancer` (a
:class:`~sklearn_unfold.DeepNMF` separator) either on clean speech mixed with
noise recordings at the given SNRs (:func:`~sklearn_unfold.enhance.make_noisy`)
or on noisy / clean pairs matched by their path relative to the two folders,
and saves it with :func:`save_model`. ``enhance`` writes the speech estimate of
each input WAV file (files, or folders searched recursively) into the output
folder as 16-bit PCM, at the input's own rate: audio at another rate than the
model's is resampled to the model's rate for enhancement and back.
``evaluate`` prints SDR, SI-SDR, PESQ and STOI of the unprocessed input and of
the enhanced speech for each pair of files, their means and the improvement
(PESQ and STOI need the optional extra ``speech``; without it the table has
the SDR columns and a note says why). ``demo`` runs
:mod:`sklearn_unfold.demo` (also installed as ``sklearn-unfold-demo``).

WAV files are read with :mod:`sklearn_unfold.wavfile`: any PCM or float
format, multi-channel files averaged to mono.

Progress goes to stderr (one line rewritten in place on a terminal, plain
lines otherwise); ``--quiet`` silences it. Results (the ``evaluate`` table) go
to stdout. Every error is one line on stderr, ``sklearn-unfold: error: ...``,
never a traceback; warnings are one line each (``sklearn-unfold: warning:``).
Exit status: 0 done, 1 failed (missing or unreadable file, empty folder,
incompatible model, ...), 2 bad command line, 130 interrupted (Ctrl-C; an
interrupted ``train`` saves nothing, an interrupted write leaves no partial
file). Set ``SKLEARN_UNFOLD_TRACEBACK=1`` to get the traceback of an
unexpected error.

Model files are ``joblib`` pickles of the dict ``{"model": enhancer,
"sklearn_unfold_version": ..., "sample_rate": ...}`` (:func:`save_model`,
:func:`load_model`, public so that a model trained in Python can be used from
the command line and back). Loading a pickle runs code from the file: only load
model files you trust.
"""

import argparse
import math
import os
import re
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import __version__
from ._files import atomic_write, writable_dir_problem
from .exceptions import FitInterruptedWarning
from .wavfile import _find_wavs, read_wav, resample, write_wav

__all__ = ["load_model", "main", "save_model"]

PROG = "sklearn-unfold"

_MODEL_KEYS = ("model", "sklearn_unfold_version", "sample_rate")
_TRACEBACK_ENV = "SKLEARN_UNFOLD_TRACEBACK"


# --------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------
def _release(version):
    """The part of a version that must match for a model file to load.

    The major version; for 0.x releases, whose minor versions may change the
    pickled classes (semantic versioning), the major and the minor.
    """
    match = re.match(r"^\s*v?(\d+)(?:\.(\d+))?", str(version))
    if match is None:
        return None
    major = int(match.group(1))
    return (major,) if major >= 1 else (major, int(match.group(2) or 0))


def _integral_rate(rate):
    """A sample rate as an int when it is a whole number of Hz, else None."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value <= 0 or value != round(value):
        return None
    return int(round(value))


def save_model(enhancer, path):
    """Save a fitted :class:`~sklearn_unfold.SpeechEnhancer` in the command line's model format.

    The file is a :func:`joblib.dump` of ``{"model": enhancer,
    "sklearn_unfold_version": sklearn_unfold.__version__, "sample_rate":
    enhancer.sample_rate}``, written to a temporary file and renamed, so an
    interrupted save leaves no partial file.

    Parameters
    ----------
    enhancer : SpeechEnhancer
        A fitted enhancer whose ``sample_rate`` is a whole number of Hz.
    path : str or path-like
        The model file (replaced if it exists).

    Raises
    ------
    TypeError
        If ``enhancer`` is not a SpeechEnhancer.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    ValueError
        If its sample rate is not a positive whole number of Hz.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold import DeepNMF, SpeechEnhancer
    >>> from sklearn_unfold.cli import load_model, save_model
    >>> rng = np.random.default_rng(0)
    >>> clean = [np.sin(np.arange(4000) * 0.3) for _ in range(2)]
    >>> noisy = [s + 0.3 * rng.standard_normal(s.size) for s in clean]
    >>> sep = DeepNMF(n_components=2, n_layers=2, n_trained_layers=0, bases_max_iter=5)
    >>> model = SpeechEnhancer(sep, sample_rate=8000, n_context=1, random_state=0).fit(noisy, clean)
    >>> path = getfixture("tmp_path") / "model.joblib"
    >>> save_model(model, path)
    >>> load_model(path).sample_rate
    8000
    """
    import joblib
    from sklearn.utils.validation import check_is_fitted

    from .enhance import SpeechEnhancer

    if not isinstance(enhancer, SpeechEnhancer):
        raise TypeError(f"expected a fitted SpeechEnhancer; got {type(enhancer).__name__}")
    check_is_fitted(enhancer)
    rate = _integral_rate(enhancer.sample_rate)
    if rate is None:
        raise ValueError(
            f"the enhancer's sample_rate must be a positive whole number of Hz; got {enhancer.sample_rate!r}"
        )
    payload = {"model": enhancer, "sklearn_unfold_version": __version__, "sample_rate": rate}
    atomic_write(path, lambda f: joblib.dump(payload, f))


def load_model(path):
    """Load a model saved by :func:`save_model` or ``sklearn-unfold train``.

    Loading unpickles the file, which runs code from it: only load files you
    trust.

    Parameters
    ----------
    path : str or path-like
        The model file.

    Returns
    -------
    enhancer : SpeechEnhancer
        The fitted enhancer; its ``sample_rate`` is the file's.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a model file (not a joblib pickle, not the dict of
        :func:`save_model`, no fitted SpeechEnhancer in it, a sample rate that
        disagrees with the model's), or was saved by an incompatible version
        of sklearn_unfold: another major version (for 0.x versions, another
        minor version). The message starts with the path.
    """
    import joblib
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from .enhance import SpeechEnhancer

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "no such model file", str(path))
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory, not a model file", str(path))
    hint = "save one with `sklearn-unfold train` or sklearn_unfold.cli.save_model"
    try:
        payload = joblib.load(path)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot read model file ({exc.strerror or exc})", str(path)) from None
    except MemoryError:
        raise
    except Exception as exc:  # unpickling fails in many ways: a clear line instead
        raise ValueError(f"{path}: not a sklearn-unfold model file ({type(exc).__name__}: {exc}); {hint}") from None
    if not isinstance(payload, dict) or not all(key in payload for key in _MODEL_KEYS):
        raise ValueError(
            f"{path}: not a sklearn-unfold model file (expected a dict with keys {', '.join(_MODEL_KEYS)}); {hint}"
        )
    saved = payload["sklearn_unfold_version"]
    if _release(saved) is None or _release(saved) != _release(__version__):
        raise ValueError(
            f"{path}: model saved by sklearn_unfold {saved}, which is incompatible with the installed "
            f"{__version__} (models load within the same major version, and within the same minor version "
            "before 1.0); train it again with this version"
        )
    model = payload["model"]
    if not isinstance(model, SpeechEnhancer):
        raise ValueError(f"{path}: the model file holds a {type(model).__name__}, not a SpeechEnhancer; {hint}")
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ValueError(f"{path}: the SpeechEnhancer in the model file is not fitted; {hint}") from None
    rate = _integral_rate(payload["sample_rate"])
    if rate is None or _integral_rate(model.sample_rate) != rate:
        raise ValueError(
            f"{path}: the model file's sample rate {payload['sample_rate']!r} does not match its model's "
            f"sample_rate {model.sample_rate!r}"
        )
    return model


# --------------------------------------------------------------------------
# Progress and one-line messages on stderr
# --------------------------------------------------------------------------
class _Progress:
    """Progress on stderr: a line rewritten in place on a terminal, plain lines otherwise.

    Off (not a character written) when ``quiet``. Plain lines are rate limited
    to one per ``interval`` seconds, besides the first and last item of a loop.
    """

    def __init__(self, quiet, stream=None, interval=5.0, heartbeat=30.0):
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.interval = interval
        self.heartbeat = 0.5 if self.tty else heartbeat
        self.start = time.perf_counter()
        self._open = False  # a \r line is on screen
        self._lock = threading.Lock()

    def _stamp(self):
        return f"[{time.perf_counter() - self.start:6.1f} s]"

    def _write(self, text, final):
        with self._lock:
            if self.tty:
                self.stream.write(f"\r\x1b[K{text}" + ("\n" if final else ""))
                self._open = not final
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def end_line(self):
        """End a line rewritten in place, so that a message can follow."""
        with self._lock:
            if self._open:
                self.stream.write("\n")
                self.stream.flush()
                self._open = False

    def note(self, message):
        if not self.quiet:
            self._write(f"{self._stamp()} {message}", final=True)

    def items(self, sequence, label, name=str):
        """Yield the items of ``sequence``, showing ``label i/n name``."""
        sequence = list(sequence)
        n = len(sequence)
        last = -math.inf
        for i, item in enumerate(sequence, 1):
            now = time.perf_counter()
            if not self.quiet and (self.tty or i == 1 or i == n or now - last >= self.interval):
                self._write(f"{self._stamp()} {label} {i}/{n} {name(item)}", final=not self.tty)
                last = now
            yield item
        if self.tty and not self.quiet:
            self.end_line()

    @contextmanager
    def working(self, label):
        """Show that ``label`` is running (elapsed time) until the block ends."""
        if self.quiet:
            yield
            return
        t0 = time.perf_counter()
        self._write(f"{self._stamp()} {label} ...", final=not self.tty)
        done = threading.Event()

        def beat():
            while not done.wait(self.heartbeat):
                self._write(f"{self._stamp()} {label} ... {time.perf_counter() - t0:.0f} s", final=not self.tty)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self.end_line()
        self.note(f"{label}: done in {time.perf_counter() - t0:.1f} s")


def _one_line(text):
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) if lines else ""


def _describe(exc):
    """One line for an exception: OSErrors as 'file: reason', others by their message."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = _one_line(exc)
    return text or type(exc).__name__


@contextmanager
def _warnings_as_lines(progress):
    """Show each distinct warning once, as one line on stderr; FitInterruptedWarning is an error."""
    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        key = (category, str(message))
        if key in seen:
            return
        seen.add(key)
        progress.end_line()
        print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("error", FitInterruptedWarning)
        warnings.showwarning = show
        yield


class _Failure(Exception):
    """An error reported as one line with exit status 1."""


# --------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see --help)\n")


def _integer(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}; got {value}")
        return value

    return parse


def _finite_float(low=None):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and value < low):
            raise argparse.ArgumentTypeError(
                f"must be a finite number{'' if low is None else f' >= {low:g}'}; got {text}"
            )
        return value

    return parse


def _max_frames(text):
    """argparse type: 'all', an int >= 1 (frames) or a fraction in (0, 1]."""
    if text.strip().lower() == "all":
        return "all"  # None would read as "not given"
    try:
        value = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a fraction, a number of frames or 'all'; got {text!r}"
            ) from None
        if not (0 < value <= 1):
            raise argparse.ArgumentTypeError(f"a fraction must be in (0, 1]; got {text}")
        return value
    if value < 1:
        raise argparse.ArgumentTypeError(f"a number of frames must be >= 1; got {value}")
    return value


def _one_of(choices):
    def parse(text):
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}; got {text!r}")
        return text

    return parse


# Model options of `train`: (flag, destination, argparse type, metavar, help). None
# leaves the estimator's default, which the help shows.
_SEPARATOR_OPTIONS = (
    ("--n-components", "n_components", _integer(1), "R", "NMF bases per source"),
    ("--n-layers", "n_layers", _integer(1), "K", "unfolded iterations"),
    ("--n-trained-layers", "n_trained_layers", _integer(0), "C", "discriminatively trained layers (<= K)"),
    ("--sparsity", "sparsity", _finite_float(0.0), "MU", "L1 weight on the activations"),
    ("--max-iter", "max_iter", _integer(0), "N", "discriminative training updates"),
)
_ENHANCER_OPTIONS = (
    ("--n-context", "n_context", _integer(1), "T", "frames of left context per feature vector"),
    ("--max-frames", "max_frames", _max_frames, "FRAMES",
     "training frames kept: a fraction in (0, 1], a number of frames or 'all'"),
    ("--target", "target", _one_of(("magnitude", "phase_sensitive")), "{magnitude,phase_sensitive}",
     "training target of each source: its magnitude or the phase-sensitive target"),
)


def _build_parser():
    from .deep_nmf import DeepNMF
    from .enhance import SpeechEnhancer

    separator_defaults = DeepNMF().get_params()
    enhancer_defaults = SpeechEnhancer().get_params()

    parser = _Parser(
        prog=PROG,
        description="Train, enhance and evaluate speech enhancement on your own WAV files "
        "(deep-unfolded NMF, sklearn_unfold).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    quiet = _Parser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    train = commands.add_parser(
        "train", parents=[quiet], help="train a speech enhancer on WAV files and save it",
        description="Train a SpeechEnhancer (DeepNMF separator) on clean speech mixed with noise at given SNRs, "
        "or on noisy / clean pairs of files matched by their path relative to the two folders.",
    )
    data = train.add_argument_group("training data (either --speech and --noise, or --noisy and --clean)")
    data.add_argument("--speech", type=Path, metavar="DIR", help="folder of clean speech WAV files (recursive)")
    data.add_argument("--noise", type=Path, metavar="DIR", help="folder of noise WAV files (recursive)")
    data.add_argument(
        "--snrs", type=_finite_float(), nargs="+", metavar="DB",
        help="speech-to-noise ratios of the mixtures in dB, with --speech/--noise (default: -5 0 5)",
    )
    data.add_argument("--noisy", type=Path, metavar="DIR", help="folder of noisy WAV files")
    data.add_argument("--clean", type=Path, metavar="DIR", help="folder of the clean speech in them, same names")
    train.add_argument(
        "--sample-rate", type=_integer(1), metavar="HZ",
        help="rate of the model; files at other rates are resampled "
        "(default: the rate of the --speech or --clean files, which must then share one)",
    )
    model = train.add_argument_group("model options")
    for flag, dest, kind, metavar, text in _SEPARATOR_OPTIONS:
        model.add_argument(flag, dest=dest, type=kind, metavar=metavar,
                           help=f"{text} (default {separator_defaults[dest]})")
    for flag, dest, kind, metavar, text in _ENHANCER_OPTIONS:
        model.add_argument(flag, dest=dest, type=kind, metavar=metavar,
                           help=f"{text} (default {enhancer_defaults[dest]})")
    model.add_argument(
        "--random-state", type=_integer(0), default=0, metavar="SEED",
        help="seed of the mixtures, frame subset and model (default 0)",
    )
    train.add_argument("--out", type=Path, required=True, metavar="MODEL", help="the model file to write")
    train.set_defaults(run=_train, parser=train)

    enhance = commands.add_parser(
        "enhance", parents=[quiet], help="enhance WAV files with a trained model",
        description="Write the speech estimate of each input WAV file into --out-dir (16-bit PCM, the input's "
        "sample rate and name; a folder's files keep their paths relative to it).",
    )
    enhance.add_argument("model", type=Path, metavar="MODEL", help="model file from `sklearn-unfold train`")
    enhance.add_argument("inputs", type=Path, nargs="+", metavar="IN", help="WAV file or folder (recursive)")
    enhance.add_argument("--out-dir", type=Path, required=True, metavar="DIR", help="folder for the outputs")
    enhance.set_defaults(run=_enhance, parser=enhance)

    evaluate = commands.add_parser(
        "evaluate", parents=[quiet], help="score a model on noisy / clean pairs of WAV files",
        description="Print SDR, SI-SDR, PESQ and STOI of the unprocessed and of the enhanced audio for each "
        "pair of files matched by their path relative to the two folders, and the means.",
    )
    evaluate.add_argument("model", type=Path, metavar="MODEL", help="model file from `sklearn-unfold train`")
    evaluate.add_argument("--noisy", type=Path, required=True, metavar="DIR", help="folder of noisy WAV files")
    evaluate.add_argument("--clean", type=Path, required=True, metavar="DIR", help="folder of the clean speech")
    evaluate.set_defaults(run=_evaluate, parser=evaluate)

    commands.add_parser(
        "demo", add_help=False, help="run the speech-enhancement demo (see `sklearn-unfold demo --help`)"
    )
    return parser


def _check_train_args(parser, args):
    speech = args.speech is not None or args.noise is not None
    paired = args.noisy is not None or args.clean is not None
    if speech and paired:
        parser.error("give either --speech and --noise, or --noisy and --clean, not both")
    if not speech and not paired:
        parser.error("the training data are missing: give --speech and --noise, or --noisy and --clean")
    if speech and (args.speech is None or args.noise is None):
        parser.error(f"{'--noise' if args.noise is None else '--speech'} is missing (--speech and --noise go together)")
    if paired and (args.noisy is None or args.clean is None):
        parser.error(f"{'--clean' if args.clean is None else '--noisy'} is missing (--noisy and --clean go together)")
    if paired and args.snrs is not None:
        parser.error("--snrs applies to --speech/--noise only (paired files are already mixed)")
    if args.snrs is None:
        args.snrs = [-5.0, 0.0, 5.0]
    from .deep_nmf import DeepNMF

    defaults = DeepNMF().get_params()
    n_layers = args.n_layers if args.n_layers is not None else defaults["n_layers"]
    n_trained = args.n_trained_layers if args.n_trained_layers is not None else defaults["n_trained_layers"]
    if n_trained > n_layers:
        parser.error(f"--n-trained-layers ({n_trained}) cannot exceed --n-layers ({n_layers})")
    out = args.out
    if out.is_dir():
        parser.error(f"argument --out: {str(out)!r} is a directory; give the model file's name")
    _check_writable_dir(parser, out.parent if str(out.parent) else Path("."), "--out")


def _check_writable_dir(parser, folder, option):
    problem = writable_dir_problem(folder)
    if problem:
        parser.error(f"argument {option}: {problem}")


# --------------------------------------------------------------------------
# Reading audio
# --------------------------------------------------------------------------
def _read_folder(folder, progress, label):
    """Every WAV file under ``folder`` at its own rate: (waveforms, rates, names)."""
    names = _find_wavs(folder)
    waves, rates = [], []
    for name in progress.items(names, f"reading {label}"):
        x, rate = read_wav(Path(folder) / name)
        waves.append(x)
        rates.append(rate)
    return waves, rates, names


def _common_rate(rates, names, folder):
    distinct = sorted(set(rates))
    if len(distinct) > 1:
        a = names[rates.index(distinct[0])]
        b = names[rates.index(distinct[1])]
        raise _Failure(
            f"{folder}: the files have different sample rates ({distinct[0]} Hz: {a}, {distinct[1]} Hz: {b}); "
            f"choose the model's rate with --sample-rate"
        )
    return distinct[0]


def _pairs(noisy_dir, clean_dir):
    """Relative names present in both folders; an error naming what does not match."""
    noisy, clean = _find_wavs(noisy_dir), _find_wavs(clean_dir)
    only_noisy = sorted(set(noisy) - set(clean))
    only_clean = sorted(set(clean) - set(noisy))
    for extra, here, there in ((only_noisy, noisy_dir, clean_dir), (only_clean, clean_dir, noisy_dir)):
        if extra:
            shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
            raise _Failure(f"{len(extra)} file(s) in {here} have no match of the same name in {there}: {shown}")
    return noisy


def _read_pair(noisy_dir, clean_dir, name):
    x, rate_x = read_wav(Path(noisy_dir) / name)
    s, rate_s = read_wav(Path(clean_dir) / name)
    if rate_x != rate_s:
        raise _Failure(
            f"{Path(noisy_dir) / name} is at {rate_x} Hz but {Path(clean_dir) / name} at {rate_s} Hz; "
            "a noisy file and its clean speech must share the sample rate"
        )
    if x.shape != s.shape:
        raise _Failure(
            f"{Path(noisy_dir) / name} has {x.shape[0]} samples but {Path(clean_dir) / name} has {s.shape[0]}; "
            "a noisy file and its clean speech must have the same length"
        )
    return x, s, rate_x


def _fit_length(x, n):
    if x.shape[0] >= n:
        return x[:n]
    return np.concatenate([x, np.zeros(n - x.shape[0], dtype=x.dtype)])


def _enhance_signal(model, x, rate):
    """Enhance ``x`` (at ``rate`` Hz) with ``model`` at the model's rate; the result at ``rate``, same length."""
    model_rate = _integral_rate(model.sample_rate)
    y = model.predict([resample(x, rate, model_rate)])[0]
    return _fit_length(resample(y, model_rate, rate), x.shape[0])


# --------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------
def _train(args, progress):
    from .deep_nmf import DeepNMF
    from .enhance import SpeechEnhancer, make_noisy

    separator = DeepNMF(**{option[1]: getattr(args, option[1]) for option in _SEPARATOR_OPTIONS
                           if getattr(args, option[1]) is not None})
    enhancer_params = {option[1]: getattr(args, option[1]) for option in _ENHANCER_OPTIONS
                       if getattr(args, option[1]) is not None}
    if enhancer_params.get("max_frames") == "all":
        enhancer_params["max_frames"] = None
    if args.speech is not None:
        speech, speech_rates, speech_names = _read_folder(args.speech, progress, "speech")
        noise, noise_rates, _ = _read_folder(args.noise, progress, "noise")
        rate = args.sample_rate or _common_rate(speech_rates, speech_names, args.speech)
        # float32 halves the memory of the mixtures; the enhancer's features are float32 anyway.
        speech = [resample(s, r, rate).astype(np.float32) for s, r in zip(speech, speech_rates)]
        noise = [resample(n, r, rate).astype(np.float32) for n, r in zip(noise, noise_rates)]
        X, y, _ = make_noisy(speech, noise, args.snrs, random_state=args.random_state)
        source = f"{len(speech)} speech files x {len(args.snrs)} SNRs ({', '.join(f'{v:g}' for v in args.snrs)} dB)"
    else:
        names = _pairs(args.noisy, args.clean)
        X, y, rates = [], [], []
        for name in progress.items(names, "reading pairs"):
            x, s, r = _read_pair(args.noisy, args.clean, name)
            X.append(x)
            y.append(s)
            rates.append(r)
        rate = args.sample_rate or _common_rate(rates, names, args.clean)
        X = [resample(x, r, rate).astype(np.float32) for x, r in zip(X, rates)]
        y = [resample(s, r, rate).astype(np.float32) for s, r in zip(y, rates)]
        source = f"{len(X)} noisy / clean pairs"
    seconds = sum(x.shape[0] for x in X) / rate
    enhancer = SpeechEnhancer(separator, sample_rate=rate, random_state=args.random_state, **enhancer_params)
    with progress.working(f"training on {source}, {seconds:.1f} s of audio at {rate} Hz"):
        enhancer.fit(X, y)
    save_model(enhancer, args.out)
    p = enhancer.separator_.get_params()
    progress.note(
        f"model saved to {args.out} (K = {p['n_layers']}, C = {p['n_trained_layers']}, R = {p['n_components']}, "
        f"{enhancer.n_training_frames_} training frames)"
    )
    return 0


def _enhance_jobs(parser, inputs, out_dir):
    """(input file, output file) for every input; folders are searched recursively."""
    jobs = []
    for item in inputs:
        if item.is_dir():
            jobs.extend((item / name, out_dir / name) for name in _find_wavs(item))
        elif item.exists():
            jobs.append((item, out_dir / item.name))
        else:
            raise FileNotFoundError(2, "no such file or folder", str(item))
    unique, seen = [], set()
    for source, target in jobs:  # the same file named twice is enhanced once
        key = os.path.normcase(os.path.realpath(source))
        if key not in seen:
            seen.add(key)
            unique.append((source, target))
    jobs = unique
    targets = {}
    for source, target in jobs:
        key = os.path.normcase(os.path.abspath(target))
        if key in targets:
            parser.error(f"{targets[key]} and {source} would both be written to {target}")
        targets[key] = source
    sources = {os.path.normcase(os.path.realpath(source)) for source, _ in jobs}
    for source, target in jobs:
        if os.path.normcase(os.path.realpath(target)) in sources:
            parser.error(f"the output {target} would overwrite an input file; choose another --out-dir")
    return jobs


def _enhance(args, progress):
    if args.out_dir.exists() and not args.out_dir.is_dir():
        args.parser.error(f"argument --out-dir: {str(args.out_dir)!r} exists and is not a directory")
    jobs = _enhance_jobs(args.parser, args.inputs, args.out_dir)
    model = load_model(args.model)
    _check_writable_dir(args.parser, args.out_dir, "--out-dir")
    for source, target in progress.items(jobs, "enhancing", name=lambda job: str(job[0])):
        x, rate = read_wav(source)
        enhanced = _enhance_signal(model, x, rate)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_wav(target, enhanced, rate)
    progress.note(f"{len(jobs)} enhanced file(s) written to {args.out_dir}")
    return 0


def _speech_metrics():
    """(pesq, stoi) from sklearn_unfold.metrics, or (None, note) when this version lacks them."""
    from . import metrics

    pesq, stoi = getattr(metrics, "pesq", None), getattr(metrics, "stoi", None)
    if pesq is None or stoi is None:
        return None, "PESQ and STOI are not shown: this version of sklearn_unfold.metrics has no pesq/stoi"
    return (pesq, stoi), None


def _evaluate(args, progress):
    model = load_model(args.model)
    names = _pairs(args.noisy, args.clean)
    speech_metrics, note = _speech_metrics()
    from .metrics import sdr, si_sdr

    rows = []
    notes = [note] if note else []
    for name in progress.items(names, "evaluating"):
        x, s, rate = _read_pair(args.noisy, args.clean, name)
        enhanced = _enhance_signal(model, x, rate)
        row = {"name": name}
        try:
            for key, metric in (("sdr", sdr), ("si_sdr", si_sdr)):
                row[key] = (metric(s, x), metric(s, enhanced))
        except ValueError as exc:
            raise _Failure(f"{Path(args.clean) / name}: {_one_line(exc)}") from None
        if speech_metrics is not None:
            for key, metric in zip(("pesq", "stoi"), speech_metrics):
                try:
                    row[key] = (metric(s, x, sample_rate=rate), metric(s, enhanced, sample_rate=rate))
                except ImportError as exc:
                    notes.append(f"PESQ and STOI are not shown: {_one_line(exc)}")
                    speech_metrics = None
                    break
                except ValueError as exc:
                    row[key] = (math.nan, math.nan)
                    notes.append(f"{key.upper()} of {name}: {_one_line(exc)}")
        rows.append(row)
    if speech_metrics is None:
        for row in rows:
            row.pop("pesq", None)
            row.pop("stoi", None)
    columns = [("sdr", "SDR [dB]", "{:8.2f}"), ("si_sdr", "SI-SDR [dB]", "{:8.2f}")]
    if speech_metrics is not None:
        columns += [("pesq", "PESQ", "{:8.2f}"), ("stoi", "STOI", "{:8.3f}")]
    print(_format_table(rows, columns, model))
    for line in notes:
        print(f"note: {line}")
    return 0


def _format_table(rows, columns, model):
    width = max([len("improvement")] + [len(row["name"]) for row in rows])
    pair = 18  # two 8-wide numbers and a 2-space gap

    def cell(fmt, value):
        return f"{'n/a':>8}" if value is None or math.isnan(value) else fmt.format(value)

    head1 = " " * width + "".join(f"  {title:^{pair}}" for _, title, _ in columns)
    head2 = f"{'file':<{width}}" + "".join(f"  {'input':>8}  {'enhanced':>8}" for _ in columns)
    lines = [
        f"{len(rows)} file(s); input = the noisy file as it is, enhanced = the model's output "
        f"(model at {_integral_rate(model.sample_rate)} Hz)",
        head1.rstrip(),
        head2,
        "-" * len(head2),
    ]
    for row in rows:
        lines.append(
            f"{row['name']:<{width}}"
            + "".join(f"  {cell(fmt, row[key][0])}  {cell(fmt, row[key][1])}" for key, _, fmt in columns)
        )
    lines.append("-" * len(head2))
    means = {}
    for key, _, _ in columns:
        values = np.array([row[key] for row in rows], dtype=np.float64)
        kept = values[~np.isnan(values).any(axis=1)]
        means[key] = kept.mean(axis=0) if len(kept) else (math.nan, math.nan)
    lines.append(
        f"{'mean':<{width}}"
        + "".join(f"  {cell(fmt, means[key][0])}  {cell(fmt, means[key][1])}" for key, _, fmt in columns)
    )
    lines.append(
        f"{'improvement':<{width}}"
        + "".join(f"  {'':>8}  {cell(fmt.replace(':', ':+'), means[key][1] - means[key][0])}"
                  for key, _, fmt in columns)
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------
def _run_demo(argv):
    from . import demo

    try:
        return int(demo.main(argv) or 0)
    except SystemExit as exc:
        return _exit_code(exc)


def _exit_code(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def main(argv=None):
    """Run the ``sklearn-unfold`` command (the console script's entry point).

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name (None: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        0 done, 1 failed, 2 bad command line, 130 interrupted; the message,
        if any, is one line on stderr.
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    progress = _Progress(quiet=True)
    try:
        if argv[:1] == ["demo"]:
            return _run_demo(argv[1:])
        parser = _build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            return _exit_code(exc)
        if args.command is None:
            print(f"{PROG}: error: choose a command: train, enhance, evaluate or demo (see --help)", file=sys.stderr)
            return 2
        if args.command == "train":
            try:
                _check_train_args(args.parser, args)
            except SystemExit as exc:
                return _exit_code(exc)
        progress = _Progress(quiet=args.quiet)
        with _warnings_as_lines(progress):
            try:
                return args.run(args, progress)
            except SystemExit as exc:  # a usage error found by a subcommand (parser.error)
                progress.end_line()
                return _exit_code(exc)
    except BrokenPipeError:
        # stdout closed early (e.g. `sklearn-unfold evaluate ... | head`): stop quietly,
        # and keep Python from complaining again when it flushes stdout at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except (KeyboardInterrupt, FitInterruptedWarning):
        progress.end_line()
        print(f"{PROG}: interrupted", file=sys.stderr, flush=True)
        return 130
    except (_Failure, OSError, ValueError) as exc:
        progress.end_line()
        print(f"{PROG}: error: {_describe(exc)}", file=sys.stderr, flush=True)
        return 1
    except MemoryError:
        progress.end_line()
        print(f"{PROG}: error: out of memory", file=sys.stderr, flush=True)
        return 1
    except Exception as exc:
        if os.environ.get(_TRACEBACK_ENV):
            raise
        progress.end_line()
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}: {_describe(exc)} "
            f"(set {_TRACEBACK_ENV}=1 to see the traceback)",
            file=sys.stderr,
            flush=True,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
