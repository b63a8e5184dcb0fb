"""The demo's command line: argument checks, interrupts, outputs (no audio is read or fetched)."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from sklearn_unfold import demo
from sklearn_unfold.datasets import DEFAULT_SNRS, DataFetchError, Mixture
from sklearn_unfold.exceptions import FitInterruptedWarning

# The runs below use a handful of updates on purpose.
pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    # The fits here are tiny: BLAS threads only add contention on a loaded machine.
    pytest.mark.usefixtures("one_blas_thread"),
]

PROG = "sklearn-unfold-demo"

# The module that holds the benchmark protocol the demo uses (make_test_set, ...).
protocol = sys.modules[demo.make_test_set.__module__]


class DataTouched(Exception):
    """Raised by the data loaders when a test expects them not to be called."""




@pytest.fixture(autouse=True)
def no_real_data(monkeypatch, tmp_path):
    """Any attempt to reach the real audio (cache or download) fails the test."""
    monkeypatch.setenv("SKLEARN_UNFOLD_DATA", str(tmp_path / "no-data"))

    def refuse(*args, **kwargs):
        raise DataTouched("the demo reached for the audio data")

    import sklearn_unfold.datasets as datasets

    for name in ("fetch_asterisk_audio", "load_utterances", "load_noise", "make_mixtures", "_mixture_stream"):
        monkeypatch.setattr(datasets, name, refuse)
        if hasattr(protocol, name):
            monkeypatch.setattr(protocol, name, refuse)
    monkeypatch.setattr(demo, "make_training_set", refuse)
    monkeypatch.setattr(demo, "make_test_set", refuse)


def run_demo(argv, capsys):
    """``demo.main(argv)`` -> (exit status, stdout, stderr), the way the entry point sees it."""
    try:
        status = demo.main(argv)
    except SystemExit as exc:
        status = exc.code
    except KeyboardInterrupt:
        # Left to propagate, it would stop the whole test session.
        pytest.fail("KeyboardInterrupt escaped demo.main")
    out, err = capsys.readouterr()
    return status, out, err


def _synthetic_mixtures(n_utterances, seconds=0.3, seed=0):
    """Harmonic 'speech' + white noise at the protocol's SNRs, laid out like make_mixtures."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(8000 * seconds)) / 8000
    mixtures = []
    for u in range(n_utterances):
        f0 = rng.uniform(100, 250)
        speech = sum(rng.uniform(0.1, 1) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 8))
        speech = speech * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
        for snr in DEFAULT_SNRS:
            noise = rng.normal(size=t.shape)
            noise *= np.sqrt(np.sum(speech**2) / np.sum(noise**2) / 10 ** (snr / 10))
            mixtures.append(Mixture(f"synthetic/{u}.wav", float(snr), speech, noise, speech + noise))
    return mixtures


@pytest.fixture
def synthetic_protocol(monkeypatch):
    """The real protocol functions on a few short synthetic mixtures; records their arguments."""
    calls = []

    def make_mixtures(subset="test", *, n_utterances=40, random_state=0, data_home=None, **kwargs):
        return _synthetic_mixtures(2 if n_utterances is None else n_utterances, seconds=0.15, seed=len(calls))

    def mixture_stream(subset, *, n_utterances, snrs, random_state, data_home):
        # make_training_set's source: the same synthetic mixtures, one at a time.
        assert list(snrs) == list(DEFAULT_SNRS)
        mixtures = make_mixtures(subset, n_utterances=n_utterances, random_state=random_state)
        utterances = [(m.utterance, m.speech) for m in mixtures[:: len(DEFAULT_SNRS)]]
        return utterances, np.asarray(DEFAULT_SNRS, dtype=np.float64), iter(mixtures)

    def recorded(function):
        def wrapper(**kwargs):
            calls.append((function.__name__, kwargs))
            return function(**kwargs)

        return wrapper

    monkeypatch.setattr(protocol, "make_mixtures", make_mixtures)
    monkeypatch.setattr(protocol, "_mixture_stream", mixture_stream)
    monkeypatch.setattr(demo, "make_training_set", recorded(protocol.make_training_set))
    monkeypatch.setattr(demo, "make_test_set", recorded(protocol.make_test_set))
    return calls


SMALL = ["--n-layers", "3", "--n-components", "3", "--max-iter", "2", "--train-utterances", "2",
         "--test-utterances", "1", "--no-plot"]


# --------------------------------------------------------------------------
# Arguments: refused at once, one line, before any data work (defect 7)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--n-components", "0"], "--n-components"),
        (["--train-frames", "0"], "--train-frames"),
        (["--test-utterances", "1000"], "--test-utterances"),
        (["--test-utterances", "65"], "--test-utterances"),
        (["--quick", "--test-utterances", "0"], "--test-utterances"),
        (["--train-utterances", "300"], "--train-utterances"),
        (["--sparsity", "-1"], "--sparsity"),
        (["--sparsity", "nan"], "--sparsity"),
        (["--sparsity", "inf"], "--sparsity"),
        (["--n-layers", "0"], "--n-layers"),
        (["--n-layers", "1"], "--n-layers"),  # the deepest model trains C = 2 layers
        (["--max-iter", "-1"], "--max-iter"),
        (["--n-components", "ten"], "--n-components"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_argument_fails_at_once_in_one_line(argv, option, capsys, tmp_path):
    status, out, err = run_demo(argv + ["--out", str(tmp_path / "out")], capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith(f"{PROG}: error:"), err
    assert option in err and "Traceback" not in err
    assert out == ""


def test_accepted_bounds_are_the_protocol_counts(capsys, tmp_path):
    # The largest counts the protocol has are accepted: the check is a bound, not an off-by-one.
    args = demo.parse_args(["--test-utterances", "64", "--train-utterances", "299", "--out", str(tmp_path)])
    assert (args.test_utterances, args.train_utterances) == (64, 299)
    assert (args.n_layers, args.n_components, args.max_iter) == (25, 100, 100)


def test_out_is_a_file(capsys, tmp_path):
    path = tmp_path / "results.txt"
    path.write_text("keep me")
    for out in (path, path / "sub"):
        status, stdout, err = run_demo(["--quick", "--out", str(out)], capsys)
        assert status == 2
        assert err.count("\n") == 1 and err.startswith(f"{PROG}: error: argument --out:"), err
        assert str(path) in err and "Traceback" not in err
    assert path.read_text() == "keep me"


def test_bad_argument_from_the_command_line(tmp_path):
    # The real entry point: exit status and stderr as a shell sees them. PATH is
    # emptied so that even a broken check could not reach apt-get.
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_unfold.demo", "--n-components", "0", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "", "SKLEARN_UNFOLD_DATA": str(tmp_path / "no-data"), "PYTHONPATH": ":".join(sys.path)},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--n-components" in result.stderr, result.stderr
    assert not (tmp_path / "no-data").exists()


# --------------------------------------------------------------------------
# --quick presets and explicit options (defect 7)
# --------------------------------------------------------------------------


def test_explicit_options_override_quick(capsys, tmp_path, monkeypatch, synthetic_protocol):
    fitted = []

    class RecordingDeepNMF(demo.DeepNMF):
        def fit(self, X, Y):
            fitted.append(self.get_params())
            return super().fit(X, Y)

    monkeypatch.setattr(demo, "DeepNMF", RecordingDeepNMF)
    argv = ["--quick", "--n-layers", "10", "--n-components", "2", "--test-utterances", "1", "--no-plot"]
    status, out, err = run_demo(argv + ["--out", str(tmp_path)], capsys)
    assert status == 0, err
    # Explicit values win; the other --quick presets stay (10 updates, 8 utterances, 2000 frames).
    assert [p["n_layers"] for p in fitted] == [10, 10, 10]
    assert [p["n_trained_layers"] for p in fitted] == [0, 1, 2]
    assert {(p["n_components"], p["max_iter"]) for p in fitted} == {(2, 10)}
    assert synthetic_protocol == [
        ("make_test_set", {"n_utterances": 1}),
        ("make_training_set", {"n_utterances": 8, "n_frames": 2000}),
    ]
    assert "K = 10, C = 2" in out


# --------------------------------------------------------------------------
# A whole run on synthetic mixtures: exit 0, outputs, the real number of mixtures
# --------------------------------------------------------------------------


def test_run_reports_the_real_number_of_mixtures(capsys, tmp_path, monkeypatch, synthetic_protocol):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    titles = []
    close = plt.close

    def record_and_close(fig=None):
        titles.extend(ax.get_title() for ax in fig.axes)
        close(fig)

    monkeypatch.setattr(plt, "close", record_and_close)
    argv = [a for a in SMALL if a != "--no-plot"] + ["--out", str(tmp_path / "out")]
    status, out, err = run_demo(argv, capsys)
    assert status == 0, err  # an int: the console script passes it to sys.exit
    n_mixtures = len(DEFAULT_SNRS)  # one test utterance
    assert f"SDR vs input SNR ({n_mixtures} test mixtures)" in titles
    assert f"test: {n_mixtures} mixtures" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"demo.png", "mixture.wav", "clean_speech.wav"}


def test_frequencies_come_from_the_model(capsys, tmp_path, monkeypatch):
    # Features with F = 7 frequencies (not the STFT's 129): the speech estimate
    # handed to the evaluation must be the model's first F columns.
    F, T, R, n = 7, 9, 3, 120
    rng = np.random.default_rng(0)
    speech, noise = rng.gamma(1.0, 1.0, (2, n, T * F))
    mixtures = _synthetic_mixtures(1)
    test = protocol.TestSet(mixtures=mixtures, X=speech[:60] + noise[:60], stfts=[], bounds=np.array([0, 60]))
    monkeypatch.setattr(demo, "make_training_set", lambda **kw: (speech + noise, np.hstack([speech, noise]), None))
    monkeypatch.setattr(demo, "make_test_set", lambda **kw: test)
    widths = []

    def evaluate(predict_speech, test_set):
        widths.append(np.asarray(predict_speech(test_set.X)).shape)
        return np.zeros(len(test_set.mixtures)), 0.0, [m.speech for m in test_set.mixtures]

    monkeypatch.setattr(demo, "evaluate", evaluate)
    argv = ["--n-layers", "3", "--n-components", str(R), "--max-iter", "2", "--no-plot", "--out", str(tmp_path)]
    status, out, err = run_demo(argv, capsys)
    assert status == 0, err
    assert widths == [(60, F)] * 3
    # P_D = C F R per source, two sources.
    line = next(l for l in out.splitlines() if l.startswith("K = 3, C = 1 (DNMF)"))
    assert line.split()[-2] == f"{1 * F * R * 2:,}"


# --------------------------------------------------------------------------
# Ctrl-C in every phase: exit 130, one line, no result (defect 6)
# --------------------------------------------------------------------------


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _interrupting_fit(when, how):
    """A DeepNMF subclass whose fit is interrupted when ``when(estimator)`` holds."""

    class InterruptedDeepNMF(demo.DeepNMF):
        def fit(self, X, Y):
            if not when(self):
                return super().fit(X, Y)
            if how == "raise":
                raise KeyboardInterrupt
            # A clean interrupt of the training loop: the fit keeps its last
            # complete update and says so with a FitInterruptedWarning.
            super().fit(X, Y)
            warnings.warn("fit interrupted by the user (KeyboardInterrupt)", FitInterruptedWarning)
            return self

    return InterruptedDeepNMF


@pytest.mark.parametrize(
    "phase",
    ["test data", "training data", "bases", "discriminative (warning)", "discriminative (raise)",
     "deep (warning)", "evaluation", "outputs"],
)
def test_ctrl_c_stops_every_phase(phase, capsys, tmp_path, monkeypatch, synthetic_protocol):
    if phase == "test data":
        monkeypatch.setattr(demo, "make_test_set", _interrupt)
    elif phase == "training data":
        monkeypatch.setattr(demo, "make_training_set", _interrupt)
    elif phase == "bases":
        monkeypatch.setattr(demo, "DeepNMF", _interrupting_fit(lambda m: m.bases is None, "raise"))
    elif phase.startswith("discriminative"):
        how = "warn" if "warning" in phase else "raise"
        monkeypatch.setattr(demo, "DeepNMF", _interrupting_fit(lambda m: m.n_trained_layers == 1, how))
    elif phase == "deep (warning)":
        monkeypatch.setattr(demo, "DeepNMF", _interrupting_fit(lambda m: m.n_trained_layers == 2, "warn"))
    elif phase == "evaluation":
        monkeypatch.setattr(demo, "evaluate", _interrupt)
    elif phase == "outputs":
        monkeypatch.setattr(demo, "_write_outputs", _interrupt)
    status, out, err = run_demo(SMALL + ["--out", str(tmp_path)], capsys)
    assert status == 130
    assert err == f"{PROG}: interrupted\n"
    if phase != "outputs":  # the table comes before the outputs are written
        # No table: a model cut short is never reported as a result.
        assert "SDR [dB]" not in out


def test_ctrl_c_filter_does_not_leak(capsys, tmp_path, monkeypatch, synthetic_protocol):
    # The demo turns FitInterruptedWarning into an error only while it runs.
    monkeypatch.setattr(demo, "make_test_set", _interrupt)
    assert run_demo(SMALL + ["--out", str(tmp_path)], capsys)[0] == 130
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.warn("interrupted", FitInterruptedWarning)
    assert len(caught) == 1


# --------------------------------------------------------------------------
# Data errors: one message, status 1, no traceback
# --------------------------------------------------------------------------


def test_data_error_is_reported_without_traceback(capsys, tmp_path, monkeypatch):
    def unavailable(**kwargs):
        raise DataFetchError("Cannot fetch the audio data: apt-get not found.")

    monkeypatch.setattr(demo, "make_test_set", unavailable)
    status, out, err = run_demo(SMALL + ["--out", str(tmp_path)], capsys)
    assert status == 1
    assert err == f"{PROG}: error: Cannot fetch the audio data: apt-get not found.\n"


def test_too_few_test_utterances_in_cache_fails_before_the_training_set(capsys, tmp_path, monkeypatch):
    # A damaged cache with fewer test utterances than asked: the refusal comes
    # from the (quick) test set, before the long training-set work starts.
    def damaged(*, n_utterances, **kwargs):
        raise ValueError(f"n_utterances={n_utterances} but the test subset has only 30 utterances.")

    monkeypatch.setattr(demo, "make_test_set", damaged)  # make_training_set still refuses to run
    status, out, err = run_demo(["--test-utterances", "40", "--out", str(tmp_path)], capsys)
    assert status == 1
    assert err == f"{PROG}: error: n_utterances=40 but the test subset has only 30 utterances.\n"
