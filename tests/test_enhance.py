"""SpeechEnhancer, make_noisy and streaming (issue 10)."""

import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.io import wavfile
from scipy.signal import resample_poly
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold

from sklearn_unfold import DeepNMF, DiscriminativeNMF, PhysicsAwareDeepNMF, SpeechEnhancer, make_noisy
from sklearn_unfold.audio import n_stft_frames, stack_context, stft
from sklearn_unfold.enhance import stft_settings
from sklearn_unfold.metrics import sdr

DATA = Path(__file__).parent / "data"


def tiny(**kwargs):
    params = dict(n_components=6, n_layers=5, n_trained_layers=2, max_iter=8, bases_max_iter=15, random_state=0)
    params.update(kwargs)
    return DeepNMF(**params)


def toy_pairs(n=4, sr=8000, seconds=0.6, seed=0):
    """Harmonic 'speech' bursts in white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    clean = [np.sin(2 * np.pi * (200 + 60 * k) * t) * (np.sin(2 * np.pi * 3 * t) > 0) for k in range(n)]
    noisy = [s + 0.3 * rng.standard_normal(s.size) for s in clean]
    return noisy, clean


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def fitted():
    noisy, clean = toy_pairs()
    return quiet(SpeechEnhancer(tiny(), sample_rate=8000, n_context=3, max_frames=None, random_state=0).fit, noisy, clean)


def test_stft_settings_at_any_rate():
    assert stft_settings(8000) == {"sample_rate": 8000.0, "window_ms": 25.0, "hop_ms": 10.0, "n_fft": 256}
    assert stft_settings(16000)["n_fft"] == 512
    s = stft_settings(44100)  # 1102.5 / 441 samples: the window rounds to a whole number of samples
    assert s["n_fft"] == 2048 and round(s["window_ms"] * 44.1) == 1102 and round(s["hop_ms"] * 44.1) == 441
    x = np.random.default_rng(0).standard_normal(4410)
    assert stft(x, **s).shape == (n_stft_frames(4410, **s), 1025)
    with pytest.raises(ValueError, match="shorter than the 25 ms window"):
        stft_settings(16000, n_fft=256)


def test_fit_trains_the_separator_on_the_documented_layout(fitted):
    # The separator sees exactly stack_context(|stft(x)|) and [speech, noise = x - y] stacked alike.
    noisy, clean = toy_pairs()
    sep = fitted.separator_
    assert sep.n_context == 3 and sep.n_sources_ == 2 and fitted.n_frequencies_ == 129
    settings = fitted.stft_settings_
    mag = lambda x: np.abs(stft(x, **settings)).astype(np.float32)  # noqa: E731
    X = np.vstack([stack_context(mag(x), 3) for x in noisy])
    Y = np.vstack([np.hstack([stack_context(mag(s), 3), stack_context(mag(x - s), 3)]) for x, s in zip(noisy, clean)])
    reference = quiet(clone(tiny()).set_params(n_context=3).fit, X, Y)
    assert fitted.n_training_frames_ == len(X)
    assert_array_equal(sep.bases_, reference.bases_)
    assert_array_equal(sep.trained_components_, reference.trained_components_)


def test_phase_sensitive_target_trains_on_the_in_phase_parts():
    # The targets are clip(|S| cos(angle S - angle X), 0, |X|) for speech and noise = x - s, stacked like X.
    from sklearn_unfold.audio import source_magnitudes

    noisy, clean = toy_pairs(n=3)
    enhancer = quiet(SpeechEnhancer(tiny(), sample_rate=8000, n_context=3, max_frames=None, target="phase_sensitive",
                                    random_state=0).fit, noisy, clean)
    settings = enhancer.stft_settings_

    def psa(source, x):
        return source_magnitudes(stft(source, **settings), stft(x, **settings), "phase_sensitive").astype(np.float32)

    X = np.vstack([stack_context(np.abs(stft(x, **settings)).astype(np.float32), 3) for x in noisy])
    Y = np.vstack([np.hstack([stack_context(psa(s, x), 3), stack_context(psa(x - s, x), 3)])
                   for x, s in zip(noisy, clean)])
    assert np.all(Y[:, :3 * 129] <= X * (1 + 1e-6))
    reference = quiet(clone(tiny()).set_params(n_context=3).fit, X, Y)
    assert_array_equal(enhancer.separator_.bases_, reference.bases_)
    assert_array_equal(enhancer.separator_.trained_components_, reference.trained_components_)
    with pytest.raises(ValueError, match="target"):
        SpeechEnhancer(target="ideal").fit(noisy, clean)


def test_predict_shapes_dtypes_and_layouts(fitted):
    noisy, clean = toy_pairs()
    out = fitted.predict([noisy[0], noisy[1][:1234]])
    assert isinstance(out, list) and [o.shape for o in out] == [(4800,), (1234,)]
    assert all(o.dtype == np.float64 for o in out)
    out32 = fitted.predict([noisy[0].astype(np.float32)])
    assert out32[0].dtype == np.float32
    assert_allclose(out32[0], out[0], rtol=0, atol=1e-4 * np.abs(out[0]).max())
    stacked = fitted.predict(np.vstack(noisy[:2]))
    assert isinstance(stacked, np.ndarray) and stacked.shape == (2, 4800)
    assert_allclose(stacked[0], out[0])
    # A frame's estimate does not depend on the other utterances in the call.
    assert_array_equal(fitted.predict([noisy[0]])[0], out[0])


def test_enhancement_improves_sdr(fitted):
    noisy, clean = toy_pairs(n=2, seed=5)
    before = np.mean([sdr(s, x) for s, x in zip(clean, noisy)])
    after = fitted.score(noisy, clean)
    assert after > before + 3.0


@pytest.mark.parametrize("chunking", ["one sample", "one hop", "random", "100 ms"])
def test_stream_equals_predict(fitted, chunking):
    noisy, _ = toy_pairs(n=1, seed=7)
    x = noisy[0][:2500]  # 1 sample chunks: keep it short
    full = fitted.predict([x])[0]
    rng = np.random.default_rng(3)
    sizes = {"one sample": lambda: 1, "one hop": lambda: 80, "random": lambda: int(rng.integers(0, 400)), "100 ms": lambda: 800}[chunking]
    stream = fitted.stream()
    parts, i = [], 0
    while i < len(x):
        n = sizes()
        part = stream.process(x[i : i + n])
        # Nothing is returned before it is final: at most what arrived, minus the latency.
        assert sum(len(p) for p in parts) + len(part) <= max(i + n - fitted.latency_ + 1, 0) + 80
        parts.append(part)
        i += n
    parts.append(stream.flush())
    out = np.concatenate(parts)
    assert out.shape == full.shape
    assert_allclose(out, full, rtol=0, atol=1e-5 * np.abs(full).max())


def test_stream_latency_is_one_window(fitted):
    noisy, _ = toy_pairs(n=1)
    stream = fitted.stream()
    assert fitted.latency_ == 200
    got = stream.process(noisy[0][:1000])
    # Output sample n is final once input n + window - 1 is in; one hop of granularity.
    assert 1000 - fitted.latency_ - 80 <= len(got) <= 1000 - fitted.latency_ + 100
    with pytest.raises(ValueError, match="1-D"):
        stream.process(np.zeros((2, 2)))
    stream.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        stream.process(np.zeros(3))


def test_short_and_float32_streams(fitted):
    x = np.random.default_rng(1).standard_normal(37).astype(np.float32)
    stream = fitted.stream()
    out = np.concatenate([stream.process(x[:10]), stream.process(x[10:]), stream.flush()])
    assert out.dtype == np.float32 and out.shape == (37,)
    assert_allclose(out, fitted.predict([x])[0], atol=1e-5 * np.abs(out).max())


def test_max_frames_is_seeded_and_bounds_memory():
    # Frames are drawn before any feature is computed: fit's memory follows the
    # kept frames, not the audio (an hour at 16 kHz would otherwise be ~10 GB).
    rng = np.random.default_rng(0)
    speech = [rng.standard_normal(16000) for _ in range(12)]  # 12 s at 16 kHz
    noisy = [s + rng.standard_normal(s.size) for s in speech]
    sep = tiny(n_components=2, n_layers=2, n_trained_layers=1, max_iter=1, bases_max_iter=2)
    a = quiet(SpeechEnhancer(sep, sample_rate=16000, n_context=9, max_frames=50, random_state=1).fit, noisy, speech)
    b = quiet(SpeechEnhancer(sep, sample_rate=16000, n_context=9, max_frames=50, random_state=1).fit, noisy, speech)
    assert a.n_training_frames_ == 50
    assert_array_equal(a.separator_.bases_, b.separator_.bases_)
    tracemalloc.start()
    quiet(SpeechEnhancer(sep, sample_rate=16000, n_context=9, max_frames=50, random_state=1).fit, noisy, speech)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    all_frames = sum(n_stft_frames(16000, **stft_settings(16000)) for _ in speech) * 3 * 9 * 257 * 4
    # One utterance's spectra and the kept rows, never all frames' features (~8.6 MB here).
    assert peak < all_frames / 3
    frac = quiet(SpeechEnhancer(sep, sample_rate=16000, n_context=9, max_frames=0.1, random_state=1).fit, noisy, speech)
    assert frac.n_training_frames_ == int(np.ceil(0.1 * 12 * n_stft_frames(16000, **stft_settings(16000))))


def test_grid_search_over_the_separator_with_utterance_groups():
    noisy, clean = toy_pairs(n=6)
    search = GridSearchCV(
        SpeechEnhancer(tiny(), sample_rate=8000, n_context=2, max_frames=None, random_state=0),
        {"separator__n_layers": [3, 5], "separator__n_trained_layers": [0, 2]},
        cv=GroupKFold(n_splits=3),
    )
    quiet(search.fit, noisy, clean, groups=np.arange(6))
    assert set(search.best_params_) == {"separator__n_layers", "separator__n_trained_layers"}
    assert np.isfinite(search.best_score_)


@pytest.mark.parametrize("separator", [DiscriminativeNMF(n_components=4, n_layers=3, max_iter=3, bases_max_iter=5),
                                       PhysicsAwareDeepNMF(n_components=4, n_layers=3, n_trained_layers=2, hankel_size=2,
                                                           reconstruction_bases="snmf", max_iter=3, bases_max_iter=5)],
                         ids=["DiscriminativeNMF", "PhysicsAwareDeepNMF"])
def test_other_separators(separator):
    noisy, clean = toy_pairs(n=2)
    est = quiet(SpeechEnhancer(separator, sample_rate=8000, n_context=2, random_state=0).fit, noisy, clean)
    assert type(est.separator_) is type(separator) and est.separator_ is not separator
    assert separator.get_params()["n_context"] == 9  # the given one is not modified
    assert est.predict(noisy[:1])[0].shape == noisy[0].shape


@pytest.mark.parametrize(
    "X, y, message",
    [
        ([np.zeros(100)], [np.zeros(99)], r"X\[0\] has 100 samples but y\[0\] has 99"),
        ([np.zeros(100)], [np.zeros(100), np.zeros(100)], "X holds 1 waveforms but y holds 2"),
        ([np.full(100, np.nan)], [np.zeros(100)], r"X\[0\] contains NaN"),
        ([np.zeros((2, 100))], [np.zeros((2, 100))], r"X\[0\] must be a 1-D real waveform"),
        ([], [], "X holds no waveform"),
        ("noisy.wav", "clean.wav", "must be a 2-D array or a list"),
        ([np.zeros(0)], [np.zeros(0)], r"X\[0\] is empty"),
    ],
)
def test_bad_input(X, y, message):
    with pytest.raises(ValueError, match=message):
        SpeechEnhancer(tiny()).fit(X, y)


def test_make_noisy():
    rng = np.random.default_rng(0)
    speech = [rng.standard_normal(500), rng.standard_normal(900)]
    noise = [rng.standard_normal(400), rng.standard_normal(5000)]
    X, y, groups = make_noisy(speech, noise, [-5, 0, 10], random_state=0)
    assert len(X) == 6 and groups.tolist() == [0, 0, 0, 1, 1, 1]
    for x, s, snr in zip(X, y, [-5, 0, 10] * 2):
        assert x.shape == s.shape
        assert_allclose(10 * np.log10(np.sum(s**2) / np.sum((x - s) ** 2)), snr, atol=1e-9)
    X2, _, _ = make_noisy(speech, noise, [-5, 0, 10], random_state=0)
    assert all(np.array_equal(a, b) for a, b in zip(X, X2))
    with pytest.raises(ValueError, match="snrs"):
        make_noisy(speech, noise, [np.inf])


def _real_prompt(name, sr):
    rate, x = wavfile.read(DATA / name)
    x = x.astype(np.float64) / 32768.0
    return resample_poly(x, sr // rate, 1) if sr != rate else x


def test_real_speech_at_16khz_improves_on_held_out_files():
    # Real recorded speech (the two committed prompts), resampled to 16 kHz:
    # train on one prompt in noise, enhance the other one, unseen.
    sr = 16000
    train_speech = _real_prompt("asterisk-dir-welcome.wav", sr)
    test_speech = _real_prompt("asterisk-call-fwd-on-busy.wav", sr)
    rng = np.random.default_rng(0)
    # Coloured noise (low-passed white noise plus a hum), a different excerpt for testing.
    white = rng.standard_normal(6 * sr)
    noise = np.convolve(white, np.ones(4) / 4, mode="same") + 0.3 * np.sin(2 * np.pi * 120 * np.arange(6 * sr) / sr)
    X, y, groups = make_noisy([train_speech[: 3 * sr]], [noise[: 3 * sr]], [0, 5], random_state=0)
    est = quiet(
        SpeechEnhancer(DeepNMF(n_components=20, n_layers=10, n_trained_layers=2, max_iter=15, bases_max_iter=30),
                       sample_rate=sr, n_context=5, max_frames=0.5, random_state=0).fit,
        X, y,
    )
    X_test, y_test, _ = make_noisy([test_speech[: 2 * sr]], [noise[3 * sr :]], [0, 5], random_state=1)
    before = np.mean([sdr(s, x) for s, x in zip(y_test, X_test)])
    after = est.score(X_test, y_test)
    assert after > before + 2.0, (before, after)
