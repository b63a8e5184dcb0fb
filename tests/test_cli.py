"""The sklearn-unfold command: train -> enhance -> evaluate round trip, model files, errors, progress.

The audio is cut from the two real prompts in tests/data (8 kHz) plus seeded
synthetic noise, written into temporary folders; the model is tiny. Nothing
here reads the dataset cache or downloads.
"""

import configparser
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

import sklearn_unfold
from sklearn_unfold import DeepNMF, cli, demo
from sklearn_unfold import metrics as metrics_module
from sklearn_unfold.enhance import SpeechEnhancer
from sklearn_unfold.exceptions import FitInterruptedWarning
from sklearn_unfold.metrics import sdr
from sklearn_unfold.wavfile import read_wav, resample, write_wav

DATA = Path(__file__).parent / "data"
PROG = "sklearn-unfold"
TINY = ["--n-components", "8", "--n-layers", "4", "--n-trained-layers", "2", "--max-iter", "5",
        "--n-context", "3", "--max-frames", "all"]
PROGRESS = re.compile(r"^\[\s*\d+\.\d s\] ")


# The fits here are tiny: BLAS threads only add contention on a loaded machine.
pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(autouse=True)
def no_real_data(monkeypatch, tmp_path):
    """The dataset cache points into tmp_path: any use of the real cache would find nothing."""
    monkeypatch.setenv("SKLEARN_UNFOLD_DATA", str(tmp_path / "no-data"))
    monkeypatch.delenv("SKLEARN_UNFOLD_TRACEBACK", raising=False)


def run(argv, capsys):
    """``cli.main(argv)`` -> (status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error(result, status, pattern):
    """Exit status ``status`` and exactly one stderr line, matching ``pattern``, no traceback."""
    code, _, err = result
    lines = err.splitlines()
    assert code == status, err
    assert len(lines) == 1, err
    assert lines[0].startswith(PROG), lines[0]
    assert re.search(pattern, lines[0]), lines[0]


def colored_noise(n, seed):
    rng = np.random.default_rng(seed)
    noise = np.convolve(rng.standard_normal(n + 2), [1.0, 0.8, 0.5], "valid")
    return 0.3 * noise / np.max(np.abs(noise))


def mix(speech, noise, snr):
    return speech + noise * np.sqrt(np.sum(speech**2) / np.sum(noise**2) / 10 ** (snr / 10))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Folders of WAV files and a model trained on them through the command line."""
    root = tmp_path_factory.mktemp("cli")
    a, rate = read_wav(DATA / "asterisk-dir-welcome.wav")
    b, _ = read_wav(DATA / "asterisk-call-fwd-on-busy.wav")
    assert rate == 8000
    pieces = [a[800:6800], a[6400:12400], b[800:6800], b[7200:13200]]  # 0.75 s each, all speech
    pieces = [0.5 * p / np.max(np.abs(p)) for p in pieces]
    for sub in ("speech", "noise", "noisy", "clean"):
        (root / sub).mkdir()
    for i, piece in enumerate(pieces[:3]):  # training speech
        write_wav(root / "speech" / f"s{i}.wav", piece, 8000)
    write_wav(root / "noise" / "n0.wav", colored_noise(16000, 0), 8000)
    held_out = pieces[3]
    for name, snr, seed in (("t0.wav", 0.0, 1), ("t1.wav", 5.0, 2)):  # held-out test pairs
        noisy = mix(held_out, colored_noise(held_out.size, seed), snr)
        write_wav(root / "clean" / name, held_out, 8000)
        write_wav(root / "noisy" / name, noisy / max(1.0, np.max(np.abs(noisy))), 8000)
    model = root / "models" / "tiny.joblib"
    status = cli.main(["train", "--speech", str(root / "speech"), "--noise", str(root / "noise"),
                       "--quiet", *TINY, "--out", str(model)])
    assert status == 0
    return root, model


@pytest.fixture
def model_obj(work):
    return cli.load_model(work[1])


# --------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------
def test_train_enhance_evaluate(work, tmp_path, capsys):
    root, _ = work
    model = tmp_path / "model.joblib"
    status, out, err = run(["train", "--speech", root / "speech", "--noise", root / "noise", "--snrs", "-5", "0",
                            *TINY, "--out", model], capsys)
    assert status == 0, err
    assert out == ""
    progress = [line for line in err.splitlines() if PROGRESS.match(line)]
    assert any("reading speech 1/3 s0.wav" in line for line in progress)
    assert any("training on 3 speech files x 2 SNRs (-5, 0 dB), 4.5 s of audio at 8000 Hz" in line
               for line in progress)
    assert "model saved to" in progress[-1]
    assert all(PROGRESS.match(line) or line.startswith(f"{PROG}: warning: ") for line in err.splitlines())

    payload = joblib.load(model)
    assert set(payload) == {"model", "sklearn_unfold_version", "sample_rate"}
    assert payload["sklearn_unfold_version"] == sklearn_unfold.__version__ and payload["sample_rate"] == 8000
    enhancer = cli.load_model(model)
    assert isinstance(enhancer, SpeechEnhancer) and enhancer.sample_rate == 8000
    params = enhancer.separator_.get_params()
    assert (params["n_components"], params["n_layers"], params["n_trained_layers"], params["max_iter"]) == (8, 4, 2, 5)
    assert enhancer.n_context == 3 and enhancer.max_frames is None
    assert f"{enhancer.n_training_frames_} training frames" in progress[-1]

    # enhance: a folder and a 16 kHz file, each written back at its own rate.
    x16, _ = read_wav(root / "noisy" / "t0.wav", sample_rate=16000)
    write_wav(tmp_path / "t16.wav", x16, 16000)
    x16, _ = read_wav(tmp_path / "t16.wav")
    out_dir = tmp_path / "enhanced"
    status, out, err = run(["enhance", model, root / "noisy", tmp_path / "t16.wav", "--out-dir", out_dir], capsys)
    assert status == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["t0.wav", "t1.wav", "t16.wav"]
    assert "enhancing 1/3" in err and "3 enhanced file(s) written to" in err
    for name in ("t0.wav", "t1.wav"):
        x, _ = read_wav(root / "noisy" / name)
        y, rate = read_wav(out_dir / name)
        assert rate == 8000 and y.shape == x.shape
        expected = np.clip(enhancer.predict([x])[0], -1, 1)
        np.testing.assert_allclose(y, expected, rtol=0, atol=1 / 32768)
        assert np.max(np.abs(y - x)) > 0.05  # really processed
    y16, rate = read_wav(out_dir / "t16.wav")
    assert rate == 16000 and y16.shape == x16.shape
    expected = resample(enhancer.predict([resample(x16, 16000, 8000)])[0], 8000, 16000)[: x16.size]
    np.testing.assert_allclose(y16, np.clip(expected, -1, 1), rtol=0, atol=1 / 32768)

    # evaluate: the table, with the unprocessed input for comparison.
    status, out, err = run(["evaluate", model, "--noisy", root / "noisy", "--clean", root / "clean"], capsys)
    assert status == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("file"))
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.split() and line.split()[0] in
            ("t0.wav", "t1.wav", "mean", "improvement")}
    assert set(rows) == {"t0.wav", "t1.wav", "mean", "improvement"}
    for title in ("SDR [dB]", "SI-SDR [dB]"):
        assert title in out
    speech_metrics = "PESQ" in out
    assert len(rows["t0.wav"]) == (8 if speech_metrics else 4)
    assert header.split() == ["file"] + ["input", "enhanced"] * (4 if speech_metrics else 2)
    # The SDR columns are the library's metric on the files as read.
    clean, _ = read_wav(root / "clean" / "t0.wav")
    noisy, _ = read_wav(root / "noisy" / "t0.wav")
    assert float(rows["t0.wav"][0]) == pytest.approx(sdr(clean, noisy), abs=0.006)
    assert float(rows["t0.wav"][1]) == pytest.approx(sdr(clean, enhancer.predict([noisy])[0]), abs=0.006)
    mean_in, mean_out = float(rows["mean"][0]), float(rows["mean"][1])
    assert mean_out > mean_in + 2.0  # the model improves SDR on held-out speech and noise
    assert float(rows["improvement"][0]) == pytest.approx(mean_out - mean_in, abs=0.011)
    if speech_metrics:
        assert "STOI" in out and not any(line.startswith("note:") for line in lines)
    assert [line for line in err.splitlines() if not PROGRESS.match(line)] == []


def test_train_on_paired_files(work, tmp_path, capsys):
    root, _ = work
    model = tmp_path / "paired.joblib"
    status, _, err = run(["train", "--noisy", root / "noisy", "--clean", root / "clean", *TINY, "--out", model],
                         capsys)
    assert status == 0, err
    assert "training on 2 noisy / clean pairs" in err
    assert cli.load_model(model).sample_rate == 8000


def test_train_with_the_phase_sensitive_target(work, tmp_path, capsys):
    root, _ = work
    model = tmp_path / "psa.joblib"
    status, _, err = run(["train", "--noisy", root / "noisy", "--clean", root / "clean", *TINY,
                          "--target", "phase_sensitive", "--out", model], capsys)
    assert status == 0, err
    assert cli.load_model(model).target == "phase_sensitive"


def test_train_resamples_to_the_asked_rate(work, tmp_path, capsys):
    root, _ = work
    speech = tmp_path / "speech"
    shutil.copytree(root / "speech", speech)
    x, _ = read_wav(speech / "s0.wav", sample_rate=16000)
    write_wav(speech / "s0.wav", x, 16000)  # now one file at 16 kHz, two at 8 kHz
    argv = ["train", "--speech", speech, "--noise", root / "noise", "--quiet", *TINY, "--out", tmp_path / "m"]
    assert_one_error(run(argv, capsys), 1, r"different sample rates \(8000 Hz: s1.wav, 16000 Hz: s0.wav\); "
                                           r"choose the model's rate with --sample-rate")
    status, _, err = run(argv + ["--sample-rate", "16000"], capsys)
    assert status == 0, err
    assert cli.load_model(tmp_path / "m").stft_settings_["n_fft"] == 512


# --------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------
def test_quiet_silences_progress(work, tmp_path, capsys):
    root, model = work
    status, out, err = run(["enhance", model, root / "noisy", "--out-dir", tmp_path / "o", "--quiet"], capsys)
    assert (status, out, err) == (0, "", "")
    status, out, err = run(["evaluate", model, "--noisy", root / "noisy", "--clean", root / "clean", "-q"],
                           capsys)
    assert status == 0 and err == "" and "mean" in out
    status, out, err = run(["train", "--speech", root / "speech", "--noise", root / "noise", "--quiet", *TINY,
                            "--out", tmp_path / "m"], capsys)
    assert status == 0 and out == ""
    # Only warnings (here: too few updates to converge), one line each, never progress.
    assert all(line.startswith(f"{PROG}: warning: ") for line in err.splitlines()), err
    status, out, err = run(["enhance", model, root / "noisy", "--out-dir", tmp_path / "o"], capsys)
    assert status == 0 and len(err.splitlines()) == 3 and all(PROGRESS.match(line) for line in err.splitlines())


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_rewrites_one_line():
    stream = FakeTerminal()
    progress = cli._Progress(quiet=False, stream=stream)
    assert list(progress.items(["a.wav", "b.wav", "c.wav"], "enhancing")) == ["a.wav", "b.wav", "c.wav"]
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "enhancing 3/3 c.wav" in text


def test_progress_in_a_log_is_rate_limited():
    stream = io.StringIO()
    progress = cli._Progress(quiet=False, stream=stream, interval=3600)
    list(progress.items(range(100), "reading", name=lambda i: f"f{i}"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("reading 1/100 f0") and lines[1].endswith("reading 100/100 f99")


def test_progress_heartbeat_during_long_work():
    stream = io.StringIO()
    progress = cli._Progress(quiet=False, stream=stream, heartbeat=0.01)
    with progress.working("training"):
        import time

        time.sleep(0.1)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("training ...")
    assert any(re.search(r"training \.\.\. \d+ s$", line) for line in lines[1:-1])
    assert re.search(r"training: done in \d+\.\d s$", lines[-1])
    quiet = io.StringIO()
    with cli._Progress(quiet=True, stream=quiet).working("training"):
        pass
    assert quiet.getvalue() == ""


# --------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------
def other_versions():
    major, minor = (int(v) for v in sklearn_unfold.__version__.split(".")[:2])
    incompatible = [f"{major + 1}.0.0"] + ([f"0.{minor + 1}.0"] if major == 0 else [])
    return incompatible, f"{major}.{minor}.999"


def dump(path, **payload):
    joblib.dump(payload, path)
    return path


def test_model_from_another_major_version_is_refused(work, model_obj, tmp_path, capsys):
    root, _ = work
    incompatible, compatible = other_versions()
    for version in incompatible:
        path = dump(tmp_path / "old.joblib", model=model_obj, sklearn_unfold_version=version, sample_rate=8000)
        with pytest.raises(ValueError, match=rf"saved by sklearn_unfold {version}, which is incompatible"):
            cli.load_model(path)
        assert_one_error(run(["enhance", path, root / "noisy", "--out-dir", tmp_path / "o", "-q"], capsys), 1,
                         rf"^{PROG}: error: .*old.joblib: model saved by sklearn_unfold {re.escape(version)}, "
                         rf"which is incompatible with the installed {re.escape(sklearn_unfold.__version__)}")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    path = dump(tmp_path / "ok.joblib", model=model_obj, sklearn_unfold_version=compatible, sample_rate=8000)
    assert isinstance(cli.load_model(path), SpeechEnhancer)


@pytest.mark.parametrize(
    "payload, message",
    [
        ([1, 2, 3], r"not a sklearn-unfold model file \(expected a dict with keys model, sklearn_unfold_version"),
        ({"model": None}, r"not a sklearn-unfold model file \(expected a dict"),
        ("deepnmf", r"the model file holds a DeepNMF, not a SpeechEnhancer"),
        ("unfitted", r"the SpeechEnhancer in the model file is not fitted"),
        ("wrong-rate", r"the model file's sample rate 16000 does not match its model's sample_rate 8000"),
        ("bad-version", r"model saved by sklearn_unfold banana, which is incompatible"),
    ],
    ids=["list", "dict-missing-keys", "other-estimator", "unfitted", "wrong-rate", "bad-version"],
)
def test_bad_model_files(work, model_obj, tmp_path, capsys, payload, message):
    root, _ = work
    version = sklearn_unfold.__version__
    payload = {
        "deepnmf": {"model": DeepNMF(), "sklearn_unfold_version": version, "sample_rate": 8000},
        "unfitted": {"model": SpeechEnhancer(sample_rate=8000), "sklearn_unfold_version": version,
                     "sample_rate": 8000},
        "wrong-rate": {"model": model_obj, "sklearn_unfold_version": version, "sample_rate": 16000},
        "bad-version": {"model": model_obj, "sklearn_unfold_version": "banana", "sample_rate": 8000},
    }.get(payload, payload) if isinstance(payload, str) else payload
    path = tmp_path / "bad.joblib"
    joblib.dump(payload, path)
    assert_one_error(run(["evaluate", path, "--noisy", root / "noisy", "--clean", root / "clean", "-q"], capsys),
                     1, rf"^{PROG}: error: \S*bad.joblib: {message}")


def test_file_that_is_not_a_pickle(work, tmp_path, capsys):
    root, _ = work
    assert_one_error(run(["enhance", root / "speech" / "s0.wav", root / "noisy", "--out-dir", tmp_path, "-q"],
                         capsys), 1, r"s0.wav: not a sklearn-unfold model file \(\w+: .*\); save one with")


def test_save_model_refuses_what_it_cannot_save(model_obj, tmp_path):
    with pytest.raises(TypeError, match="expected a fitted SpeechEnhancer; got DeepNMF"):
        cli.save_model(DeepNMF(), tmp_path / "m")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        cli.save_model(SpeechEnhancer(), tmp_path / "m")
    odd = SpeechEnhancer(sample_rate=8000.5)
    odd.__dict__.update({k: v for k, v in model_obj.__dict__.items() if k.endswith("_")})
    with pytest.raises(ValueError, match="whole number of Hz; got 8000.5"):
        cli.save_model(odd, tmp_path / "m")
    assert not list(tmp_path.iterdir())
    cli.save_model(model_obj, tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary file left


# --------------------------------------------------------------------------
# Errors: one line, exit status 2 (command line) or 1 (everything else)
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, message",
    [
        ([], r"choose a command: train, enhance, evaluate or demo"),
        (["frobnicate"], r"invalid choice: 'frobnicate'"),
        (["train", "--speech", "{root}/speech", "--out", "{tmp}/m"], r"--noise is missing"),
        (["train", "--out", "{tmp}/m"], r"the training data are missing"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise", "--noisy", "{root}/noisy", "--clean",
          "{root}/clean", "--out", "{tmp}/m"], r"either --speech and --noise, or --noisy and --clean, not both"),
        (["train", "--noisy", "{root}/noisy", "--clean", "{root}/clean", "--snrs", "0", "--out", "{tmp}/m"],
         r"--snrs applies to --speech/--noise only"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise", "--n-layers", "0", "--out", "{tmp}/m"],
         r"argument --n-layers: must be >= 1; got 0"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise", "--n-layers", "3",
          "--n-trained-layers", "4", "--out", "{tmp}/m"], r"--n-trained-layers \(4\) cannot exceed --n-layers \(3\)"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise", "--snrs", "loud", "--out", "{tmp}/m"],
         r"argument --snrs: expected a number, got 'loud'"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise", "--max-frames", "1.5", "--out",
          "{tmp}/m"], r"argument --max-frames: a fraction must be in \(0, 1\]"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise", "--sparsity", "nan", "--out", "{tmp}/m"],
         r"argument --sparsity: must be a finite number >= 0"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise", "--target", "ideal", "--out", "{tmp}/m"],
         r"argument --target: must be one of magnitude, phase_sensitive; got 'ideal'"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise", "--out", "{tmp}"],
         r"argument --out: .* is a directory"),
        (["train", "--speech", "{root}/speech", "--noise", "{root}/noise"], r"required: --out"),
        (["enhance", "{model}"], r"the following arguments are required: IN, --out-dir"),
        (["enhance", "{model}", "{root}/noisy", "--out-dir", "{root}/clean/t0.wav"],
         r"argument --out-dir: .*t0.wav' exists and is not a directory"),
        (["enhance", "{model}", "{root}/noisy", "--out-dir", "{root}/noisy"],
         r"the output .*t0.wav would overwrite an input file"),
        (["enhance", "{model}", "{root}/noisy/t0.wav", "{root}/clean/t0.wav", "--out-dir", "{tmp}/o"],
         r"noisy/t0.wav and .*clean/t0.wav would both be written to .*o/t0.wav"),
        (["evaluate", "{model}", "--noisy", "{root}/noisy"], r"required: --clean"),
        (["enhance", "{model}", "{root}/noisy", "--out-dir", "{tmp}/o", "--speed", "11"],
         r"unrecognized arguments: --speed 11"),
    ],
)
def test_usage_errors(work, tmp_path, capsys, argv, message):
    root, model = work
    argv = [a.format(root=root, tmp=tmp_path, model=model) for a in argv]
    result = run(argv, capsys)
    assert_one_error(result, 2, message)
    assert result[1] == ""
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists()


def test_data_errors(work, tmp_path, capsys):
    root, model = work
    train = ["train", "--noise", root / "noise", "--quiet", *TINY, "--out", tmp_path / "m"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    assert_one_error(run(train + ["--speech", tmp_path / "empty"], capsys), 1,
                     rf"^{PROG}: error: \S*empty: no files matching '\*.wav' \(searched recursively\)$")
    assert_one_error(run(train + ["--speech", tmp_path / "nowhere"], capsys), 1,
                     rf"^{PROG}: error: \S*nowhere: no such folder$")
    bad = tmp_path / "bad"
    shutil.copytree(root / "speech", bad)
    (bad / "s1.wav").write_bytes((bad / "s1.wav").read_bytes()[:-500])
    assert_one_error(run(train + ["--speech", bad], capsys), 1, r"s1.wav: truncated WAV file")
    (bad / "s1.wav").write_text("not audio")
    assert_one_error(run(train + ["--speech", bad], capsys), 1, r"s1.wav: not a readable WAV file")
    assert not (tmp_path / "m").exists()

    # Errors found before any progress is shown are one line even without --quiet.
    assert_one_error(run(["enhance", tmp_path / "none.joblib", root / "noisy", "--out-dir", tmp_path / "o"],
                         capsys), 1, r"none.joblib: no such model file$")
    assert_one_error(run(["enhance", model, tmp_path / "missing.wav", "--out-dir", tmp_path / "o"], capsys), 1,
                     r"missing.wav: no such file or folder$")
    assert_one_error(run(["enhance", model, tmp_path / "empty", "--out-dir", tmp_path / "o"], capsys), 1,
                     r"empty: no files matching")
    assert_one_error(run(["enhance", model, bad / "s1.wav", "--out-dir", tmp_path / "o", "-q"], capsys), 1,
                     r"s1.wav: not a readable WAV file")
    # Without --quiet the error follows the progress lines, on its own line.
    status, _, err = run(["enhance", model, bad / "s1.wav", "--out-dir", tmp_path / "o"], capsys)
    assert status == 1 and PROGRESS.match(err.splitlines()[0])
    assert err.splitlines()[-1].startswith(f"{PROG}: error: ") and "Traceback" not in err


def test_paired_file_errors(work, tmp_path, capsys):
    root, model = work
    noisy, clean = tmp_path / "noisy", tmp_path / "clean"
    shutil.copytree(root / "noisy", noisy)
    shutil.copytree(root / "clean", clean)
    write_wav(noisy / "extra.wav", np.zeros(4000), 8000)
    evaluate = ["evaluate", model, "--noisy", noisy, "--clean", clean, "-q"]
    train = ["train", "--noisy", noisy, "--clean", clean, "-q", *TINY, "--out", tmp_path / "m"]
    for argv in (evaluate, train):
        assert_one_error(run(argv, capsys), 1, r"1 file\(s\) in \S*noisy have no match of the same name in "
                                               r"\S*clean: extra.wav$")
    (noisy / "extra.wav").unlink()
    x, _ = read_wav(noisy / "t1.wav")
    write_wav(noisy / "t1.wav", x[:-10], 8000)
    for argv in (evaluate, train):
        assert_one_error(run(argv, capsys), 1, r"noisy/t1.wav has 5990 samples but \S*clean/t1.wav has 6000; "
                                               r"a noisy file and its clean speech must have the same length")
    write_wav(noisy / "t1.wav", resample(x, 8000, 16000), 16000)
    assert_one_error(run(evaluate, capsys), 1, r"noisy/t1.wav is at 16000 Hz but \S*clean/t1.wav at 8000 Hz")
    assert not (tmp_path / "m").exists()


def test_interrupt_during_training_saves_nothing(work, tmp_path, capsys, monkeypatch):
    root, _ = work

    def interrupted(self, X, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(SpeechEnhancer, "fit", interrupted)
    argv = ["train", "--speech", root / "speech", "--noise", root / "noise", *TINY, "--out", tmp_path / "m"]
    status, out, err = run(argv, capsys)
    assert status == 130 and out == "" and err.splitlines()[-1] == f"{PROG}: interrupted"
    assert_one_error(run(argv + ["-q"], capsys), 130, rf"^{PROG}: interrupted$")

    def stopped_early(self, X, y):  # a fit that caught Ctrl-C and kept a partial model
        import warnings

        warnings.warn("stopped", FitInterruptedWarning)
        return self

    monkeypatch.setattr(SpeechEnhancer, "fit", stopped_early)
    assert_one_error(run(argv + ["-q"], capsys), 130, rf"^{PROG}: interrupted$")
    assert not (tmp_path / "m").exists()


def test_interrupt_during_enhance(work, tmp_path, capsys, monkeypatch):
    root, model = work
    monkeypatch.setattr(SpeechEnhancer, "predict", lambda self, X: (_ for _ in ()).throw(KeyboardInterrupt))
    assert_one_error(run(["enhance", model, root / "noisy", "--out-dir", tmp_path / "o", "-q"], capsys), 130,
                     rf"^{PROG}: interrupted$")
    assert list((tmp_path / "o").iterdir()) == []


def test_unexpected_error_is_one_line_unless_asked(work, tmp_path, capsys, monkeypatch):
    root, model = work

    def broken(self, X):
        raise RuntimeError("something broke\ninside")

    monkeypatch.setattr(SpeechEnhancer, "predict", broken)
    argv = ["enhance", model, root / "noisy", "--out-dir", tmp_path / "o", "-q"]
    assert_one_error(run(argv, capsys), 1, r"error: unexpected RuntimeError: something broke; inside "
                                           r"\(set SKLEARN_UNFOLD_TRACEBACK=1 to see the traceback\)$")
    monkeypatch.setenv("SKLEARN_UNFOLD_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="something broke"):
        cli.main([str(a) for a in argv])


def test_clipping_is_one_warning_line(work, tmp_path, capsys, monkeypatch):
    root, model = work
    monkeypatch.setattr(SpeechEnhancer, "predict", lambda self, X: [2.0 * np.asarray(x) + 1.5 for x in X])
    status, _, err = run(["enhance", model, root / "noisy" / "t0.wav", "--out-dir", tmp_path / "o", "-q"], capsys)
    assert status == 0
    assert len(err.splitlines()) == 1 and re.match(rf"^{PROG}: warning: \S*t0.wav: \d+ of 6000 samples beyond "
                                                   r"\[-1, 1\] \(peak \d\.\d+\) clipped$", err)


# --------------------------------------------------------------------------
# evaluate without PESQ / STOI
# --------------------------------------------------------------------------
def test_evaluate_without_speech_metrics(work, capsys, monkeypatch):
    root, model = work
    argv = ["evaluate", model, "--noisy", root / "noisy", "--clean", root / "clean", "-q"]
    monkeypatch.delattr(metrics_module, "pesq", raising=False)
    status, out, err = run(argv, capsys)
    assert status == 0 and err == ""
    assert "PESQ" not in out.split("note:")[0] and "SDR [dB]" in out and "SI-SDR [dB]" in out
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert notes == ["note: PESQ and STOI are not shown: this version of sklearn_unfold.metrics has no pesq/stoi"]
    mean = next(line for line in out.splitlines() if line.startswith("mean")).split()
    assert len(mean) == 5


def test_evaluate_without_the_speech_extra(work, capsys, monkeypatch):
    root, model = work

    def missing(*args, **kwargs):
        raise ImportError('PESQ needs the package pesq: pip install "sklearn_unfold[speech]"')

    monkeypatch.setattr(metrics_module, "pesq", missing, raising=False)
    monkeypatch.setattr(metrics_module, "stoi", missing, raising=False)
    status, out, err = run(["evaluate", model, "--noisy", root / "noisy", "--clean", root / "clean", "-q"], capsys)
    assert status == 0 and err == ""
    assert [line for line in out.splitlines() if line.startswith("note:")] == [
        'note: PESQ and STOI are not shown: PESQ needs the package pesq: pip install "sklearn_unfold[speech]"'
    ]
    row = next(line for line in out.splitlines() if line.startswith("t0.wav"))
    assert "STOI" not in out.split("note:")[0] and len(row.split()) == 5


def test_evaluate_with_speech_metrics(work, model_obj, capsys):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    root, model = work
    status, out, _ = run(["evaluate", model, "--noisy", root / "noisy", "--clean", root / "clean", "-q"], capsys)
    assert status == 0
    row = next(line for line in out.splitlines() if line.startswith("t1.wav")).split()
    clean, _ = read_wav(root / "clean" / "t1.wav")
    noisy, _ = read_wav(root / "noisy" / "t1.wav")
    enhanced = model_obj.predict([noisy])[0]
    expected = [metric(clean, estimate, sample_rate=8000)
                for metric in (metrics_module.pesq, metrics_module.stoi) for estimate in (noisy, enhanced)]
    assert [float(v) for v in row[5:9]] == pytest.approx(expected, abs=0.006)


# --------------------------------------------------------------------------
# demo, entry points, the installed script
# --------------------------------------------------------------------------
def test_demo_subcommand_forwards_its_arguments(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(demo, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["demo", "--quick", "--no-plot"]) == 0
    assert seen == [["--quick", "--no-plot"]]


def test_demo_subcommand_checks_arguments_before_any_data(capsys):
    status, _, err = run(["demo", "--n-layers", "1"], capsys)
    assert status == 2 and len(err.splitlines()) == 1 and "argument --n-layers: must be >= 2" in err
    status, out, _ = run(["demo", "--help"], capsys)
    assert status == 0 and "--quick" in out


def test_console_scripts_are_declared():
    config = configparser.ConfigParser()
    config.read(Path(__file__).parents[1] / "setup.cfg")
    scripts = {
        line.split("=")[0].strip(): line.split("=")[1].strip()
        for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    }
    assert scripts == {"sklearn-unfold": "sklearn_unfold.cli:main", "sklearn-unfold-demo": "sklearn_unfold.demo:main"}


def test_installed_console_script_exit_status(work, tmp_path):
    script = Path(sys.executable).with_name("sklearn-unfold")
    if not script.exists():
        script = shutil.which("sklearn-unfold")
    if script is None:
        pytest.skip("the sklearn-unfold console script is not installed (pip install -e .)")
    root, _ = work
    result = subprocess.run(
        [str(script), "enhance", str(tmp_path / "missing.joblib"), str(root / "noisy"), "--out-dir",
         str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"{PROG}: error: {tmp_path / 'missing.joblib'}: no such model file"]
