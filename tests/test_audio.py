"""Tests of sklearn_unfold.audio: STFT / iSTFT, context stacking, mixing."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sklearn_unfold.audio import (
    SAMPLE_RATE,
    istft,
    mix_at_snr,
    n_stft_frames,
    resynthesize,
    stack_context,
    stft,
)

# --------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------


def _sqrt_hann(win_len):
    # Periodic Hann written out, independent of scipy.
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_len) / win_len))


def _frame_positions(n_samples, win_len, hop):
    """Brute force: every hop position p where a non-zero sample of the window, which
    starts at p*hop - mid, falls on the signal zero-padded to at least half a window."""
    mid = win_len // 2
    n = max(n_samples, win_len - mid)
    support = np.flatnonzero(_sqrt_hann(win_len) > 0)
    return [
        p
        for p in range(-win_len, n // hop + win_len)
        if np.any((p * hop - mid + support >= 0) & (p * hop - mid + support < n))
    ]


def _reference_stft(x, win_len=200, hop=80, n_fft=256):
    """Frame-by-frame STFT with the phase reference at the window centre."""
    w = _sqrt_hann(win_len)
    mid = win_len // 2
    positions = _frame_positions(len(x), win_len, hop)
    pad = 2 * win_len
    xp = np.concatenate([np.zeros(pad), x, np.zeros(pad + win_len)])
    freqs = np.arange(n_fft // 2 + 1)
    rows = []
    for p in positions:
        start = pad + p * hop - mid
        spectrum = np.fft.rfft(xp[start : start + win_len] * w, n_fft)
        rows.append(spectrum * np.exp(2j * np.pi * freqs * mid / n_fft))
    return np.array(rows), positions


LENGTHS = [1, 37, 99, 100, 141, 142, 199, 200, 201, 221, 279, 280, 281, 1001, 8000]


# --------------------------------------------------------------------------
# STFT / iSTFT
# --------------------------------------------------------------------------


@pytest.mark.parametrize("n", LENGTHS)
def test_perfect_reconstruction(n):
    x = np.random.default_rng(n).standard_normal(n)
    Z = stft(x)
    y = istft(Z, length=n)
    assert y.shape == (n,) and y.dtype == np.float64
    assert_allclose(y, x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", LENGTHS)
def test_stft_matches_frame_by_frame_reference(n):
    x = np.random.default_rng(100 + n).standard_normal(n)
    reference, positions = _reference_stft(x)
    Z = stft(x)
    assert Z.shape == (len(positions), 129)
    assert_allclose(Z, reference, rtol=0, atol=1e-10)


@pytest.mark.parametrize("n", LENGTHS)
def test_frame_count_formula(n):
    expected = (max(n, 100) + 98) // 80 + 2
    assert n_stft_frames(n) == expected == len(_frame_positions(n, 200, 80))
    assert stft(np.ones(n)).shape == (expected, 129)


@pytest.mark.parametrize(
    "window_ms, hop_ms, n_fft, win_len, hop",
    [(32.0, 16.0, 256, 256, 128), (25.0, 12.5, 256, 200, 100), (20.0, 5.0, 160, 160, 40)],
)
def test_other_frame_settings(window_ms, hop_ms, n_fft, win_len, hop):
    kwargs = {"window_ms": window_ms, "hop_ms": hop_ms, "n_fft": n_fft}
    for n in (50, 333, 2000):
        x = np.random.default_rng(n).standard_normal(n)
        Z = stft(x, **kwargs)
        reference, positions = _reference_stft(x, win_len, hop, n_fft)
        assert (
            Z.shape
            == (len(positions), n_fft // 2 + 1)
            == (n_stft_frames(n, **kwargs), n_fft // 2 + 1)
        )
        assert_allclose(Z, reference, atol=1e-10)
        assert_allclose(istft(Z, length=n, **kwargs), x, atol=1e-10)


def test_sample_rate_changes_window_length():
    # 25 ms at 16 kHz is 400 samples: needs n_fft >= 400.
    x = np.random.default_rng(0).standard_normal(3000)
    Z = stft(x, sample_rate=16000, n_fft=512)
    reference, _ = _reference_stft(x, 400, 160, 512)
    assert_allclose(Z, reference, atol=1e-10)


def test_unit_impulse():
    # A unit impulse at sample k shows up in frame p with magnitude w[k - p*hop + mid]
    # at every frequency (the window sample it falls on).
    n, k = 1000, 437
    x = np.zeros(n)
    x[k] = 1.0
    Z = stft(x)
    w = _sqrt_hann(200)
    positions = _frame_positions(n, 200, 80)
    for row, p in enumerate(positions):
        m = k - p * 80 + 100
        expected = w[m] if 0 <= m < 200 else 0.0
        assert_allclose(np.abs(Z[row]), expected, atol=1e-12)
    assert_allclose(istft(Z, length=n), x, atol=1e-12)


def test_sine_peaks_at_its_bin():
    f_bin = 32  # 32 * 8000 / 256 = 1000 Hz
    x = np.sin(2 * np.pi * 1000 * np.arange(4000) / SAMPLE_RATE)
    magnitude = np.abs(stft(x))
    assert np.all(np.argmax(magnitude[3:-3], axis=1) == f_bin)


def test_dtype_preservation():
    x64 = np.random.default_rng(0).standard_normal(1234)
    x32 = x64.astype(np.float32)
    Z32 = stft(x32)
    assert Z32.dtype == np.complex64
    assert stft(x64).dtype == np.complex128
    assert stft(list(x64)).dtype == np.complex128
    assert stft(np.arange(500)).dtype == np.complex128  # integers are computed in float64
    y32 = istft(Z32, length=1234)
    assert y32.dtype == np.float32
    assert_allclose(y32, x32, atol=1e-5)
    assert_allclose(Z32, stft(x64), rtol=0, atol=1e-4)


def test_inputs_not_modified():
    x = np.random.default_rng(0).standard_normal(300)
    x_copy = x.copy()
    Z = stft(x)
    Z_copy = Z.copy()
    istft(Z, length=300)
    resynthesize(np.abs(Z), Z, length=300)
    assert_array_equal(x, x_copy)
    assert_array_equal(Z, Z_copy)


@pytest.mark.parametrize(
    "x, kwargs, match",
    [
        (np.array([0.0, np.nan, 1.0]), {}, "NaN"),
        (np.array([0.0, np.inf, 1.0]), {}, "infinity"),
        (np.zeros((2, 300)), {}, "1-D"),
        (np.zeros(0), {}, "0 sample"),
        (np.zeros(300), {"n_fft": 128}, "n_fft=128"),
        (np.zeros(300), {"window_ms": 25.01}, "whole number"),
        (np.zeros(300), {"hop_ms": 30.0}, "longer than the window"),
        (np.zeros(300), {"hop_ms": -1.0}, "hop_ms"),
    ],
)
def test_stft_bad_input(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stft(x, **kwargs)


def test_istft_bad_input():
    Z = stft(np.random.default_rng(0).standard_normal(1000))
    with pytest.raises(ValueError, match="shape"):
        istft(Z[:-1], length=1000)  # one frame short
    with pytest.raises(ValueError, match="shape"):
        istft(Z[:, :-1], length=1000)
    with pytest.raises(ValueError, match="shape"):
        istft(Z, length=2000)
    Z_nan = Z.copy()
    Z_nan[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        istft(Z_nan, length=1000)
    with pytest.raises(ValueError, match="length"):
        istft(Z, length=0)
    # hop == window: the sqrt-Hann's leading zero leaves samples uncovered.
    Z_hop = stft(np.ones(1000), hop_ms=25.0)
    with pytest.raises(ValueError, match="not invertible"):
        istft(Z_hop, length=1000, hop_ms=25.0)


# --------------------------------------------------------------------------
# Resynthesis
# --------------------------------------------------------------------------


def test_resynthesize_with_true_magnitude_and_scaling():
    x = np.random.default_rng(1).standard_normal(2345)
    Z = stft(x)
    assert_allclose(resynthesize(np.abs(Z), Z, length=2345), x, atol=1e-10)
    # Same phase, magnitude scaled by 0.3: the waveform is scaled by 0.3.
    assert_allclose(resynthesize(0.3 * np.abs(Z), Z, length=2345), 0.3 * x, atol=1e-10)


def test_resynthesize_uses_the_mixture_phase():
    rng = np.random.default_rng(2)
    s, n = rng.standard_normal(1500), rng.standard_normal(1500)
    Zs, Zm = stft(s), stft(s + n)
    magnitude = np.abs(Zs)
    y = resynthesize(magnitude, Zm, length=1500)
    phasor = Zm / np.abs(Zm)
    assert_allclose(y, istft(magnitude * phasor, length=1500), atol=1e-10)
    assert not np.allclose(y, s, atol=1e-3)  # the phase is the mixture's, not the speech's


def test_resynthesize_zero_mixture_bins_and_dtypes():
    Z = np.zeros((n_stft_frames(500), 129), dtype=np.complex64)
    y = resynthesize(np.zeros(Z.shape, dtype=np.float32), Z, length=500)
    assert y.dtype == np.float32 and np.all(y == 0)
    # Phase 0 where the mixture is zero: a constant magnitude spectrum is real.
    y64 = resynthesize(np.ones(Z.shape), Z, length=500)
    assert y64.dtype == np.float64 and np.all(np.isfinite(y64))
    assert_allclose(y64, istft(np.ones(Z.shape), length=500))


def test_resynthesize_bad_input():
    Z = stft(np.ones(500))
    with pytest.raises(ValueError, match="must match"):
        resynthesize(np.abs(Z)[:-1], Z, length=500)
    with pytest.raises(ValueError, match="non-negative"):
        resynthesize(-np.abs(Z), Z, length=500)
    with pytest.raises(ValueError, match="NaN"):
        resynthesize(np.full(Z.shape, np.nan), Z, length=500)


# --------------------------------------------------------------------------
# Context stacking
# --------------------------------------------------------------------------


def _reference_stack(S, T):
    rows = []
    for t in range(S.shape[0]):
        rows.append(np.concatenate([S[max(t - T + 1 + j, 0)] for j in range(T)]))
    return np.array(rows)


@pytest.mark.parametrize("T", [1, 2, 5, 9, 15])
def test_stack_context_matches_loop(T):
    S = np.random.default_rng(T).random((11, 7))
    X = stack_context(S, T)
    assert X.shape == (11, T * 7)
    assert_array_equal(X, _reference_stack(S, T))
    assert_array_equal(X[:, -7:], S)  # the target frame is the last block


def test_stack_context_edges():
    S = np.arange(12.0).reshape(4, 3)
    X = stack_context(S, 3)
    assert_array_equal(X[0], np.concatenate([S[0], S[0], S[0]]))  # first frame repeated
    assert_array_equal(X[1], np.concatenate([S[0], S[0], S[1]]))
    assert_array_equal(X[2], np.concatenate([S[0], S[1], S[2]]))
    assert_array_equal(X[3], np.concatenate([S[1], S[2], S[3]]))


def test_stack_context_copy_and_dtype():
    for dtype in (np.float32, np.float64, np.complex64, np.int64):
        S = (np.arange(10).reshape(5, 2)).astype(dtype)
        for T in (1, 4):
            X = stack_context(S, T)
            assert X.dtype == dtype
            assert not np.shares_memory(X, S)
    S = np.ones((3, 2))
    X = stack_context(S, 1)
    X[0, 0] = 5.0
    assert S[0, 0] == 1.0


def test_stack_context_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        stack_context(np.ones(5), 3)
    with pytest.raises(ValueError, match="2-D"):
        stack_context(np.ones((0, 5)), 3)
    with pytest.raises(ValueError, match="n_context"):
        stack_context(np.ones((4, 5)), 0)


# --------------------------------------------------------------------------
# Mixing at an SNR
# --------------------------------------------------------------------------


@pytest.mark.parametrize("snr", [-6.0, -3.0, 0.0, 3.0, 6.0, 9.0, 17.5])
def test_mix_at_snr_exact(snr):
    rng = np.random.default_rng(3)
    speech = 0.1 * rng.standard_normal(4000)
    noise = 2.0 * rng.standard_normal(4000) + 0.5
    mixture, scaled = mix_at_snr(speech, noise, snr)
    assert_allclose(10 * np.log10(np.sum(speech**2) / np.sum(scaled**2)), snr, atol=1e-10)
    assert_allclose(mixture, speech + scaled, rtol=0, atol=1e-15)
    ratio = scaled / noise  # a positive constant: the noise is only scaled
    assert ratio[0] > 0
    assert_allclose(ratio, ratio[0], rtol=1e-12)


def test_mix_at_snr_float32_and_inputs_kept():
    rng = np.random.default_rng(4)
    speech = rng.standard_normal(1000).astype(np.float32)
    noise = rng.standard_normal(1000).astype(np.float32)
    speech_copy, noise_copy = speech.copy(), noise.copy()
    mixture, scaled = mix_at_snr(speech, noise, 0.0)
    assert mixture.dtype == scaled.dtype == np.float32
    assert_allclose(
        10 * np.log10(np.sum(speech.astype(float) ** 2) / np.sum(scaled.astype(float) ** 2)),
        0.0,
        atol=1e-5,
    )
    assert_array_equal(speech, speech_copy)
    assert_array_equal(noise, noise_copy)
    assert mix_at_snr(speech, noise.astype(np.float64), 0.0)[0].dtype == np.float64


@pytest.mark.parametrize(
    "speech, noise, snr, match",
    [
        (np.ones(10), np.zeros(10), 0.0, "noise has zero energy"),
        (np.zeros(10), np.ones(10), 0.0, "speech has zero energy"),
        (np.ones(10), np.ones(11), 0.0, "same length"),
        (np.ones((2, 5)), np.ones((2, 5)), 0.0, "1-D"),
        (np.ones(10), np.full(10, np.nan), 0.0, "NaN"),
        (np.ones(10), np.ones(10), np.inf, "snr_db"),
        (np.ones(10), np.ones(10), np.nan, "snr_db"),
    ],
)
def test_mix_at_snr_errors(speech, noise, snr, match):
    with pytest.raises(ValueError, match=match):
        mix_at_snr(speech, noise, snr)


def _snr_db(speech, noise):
    """Measured SNR that cannot overflow: both signals share one scale."""
    common = max(np.max(np.abs(speech)), np.max(np.abs(noise)))
    return 10 * np.log10(np.sum((speech / common) ** 2) / np.sum((noise / common) ** 2))


@pytest.mark.parametrize(
    "speech_scale, noise_scale",
    [(1e300, 1.0), (1.0, 1e-200), (1e-200, 1e300), (1e-300, 1e-300), (1e300, 1e-200)],
)
@pytest.mark.parametrize("snr", [-6.0, 0.0, 9.0])
def test_mix_at_snr_at_extreme_scales(speech_scale, noise_scale, snr):
    rng = np.random.default_rng(5)
    speech = rng.standard_normal(2000)
    noise = rng.standard_normal(2000) + 0.3
    reference_mixture, reference_noise = mix_at_snr(speech, noise, snr)

    mixture, scaled = mix_at_snr(speech_scale * speech, noise_scale * noise, snr)

    assert np.all(np.isfinite(mixture)) and np.all(np.isfinite(scaled))
    assert_allclose(_snr_db(speech_scale * speech, scaled), snr, atol=1e-9)
    # Only the units change: the same mixture, scaled with the speech.
    assert_allclose(scaled, speech_scale * reference_noise, rtol=1e-12)
    assert_allclose(mixture, speech_scale * reference_mixture, rtol=1e-12)


@pytest.mark.parametrize("snr", [1e6, -1e6, 7000.0, -7000.0])
def test_mix_at_snr_unrepresentable_snr_is_a_clear_error(snr):
    rng = np.random.default_rng(6)
    speech, noise = rng.standard_normal((2, 500))
    limit = "below the smallest normal" if snr > 0 else "above the largest"
    with np.errstate(all="raise"):  # no overflow / underflow on the way to the message
        with pytest.raises(ValueError, match=rf"snr_db=.*cannot be met in float64.*{limit}"):
            mix_at_snr(speech, noise, snr)


def test_mix_at_snr_extreme_but_representable_snr_is_met():
    rng = np.random.default_rng(7)
    speech, noise = rng.standard_normal((2, 500))
    for snr in (600.0, -600.0):
        mixture, scaled = mix_at_snr(speech, noise, snr)
        assert_allclose(_snr_db(speech, scaled), snr, rtol=1e-12)
    # float32 output has a smaller range: 600 dB needs a noise peak near 1e-30.
    mixture, scaled = mix_at_snr(speech.astype(np.float32), noise.astype(np.float32), 600.0)
    assert scaled.dtype == np.float32
    assert_allclose(_snr_db(speech.astype(np.float32), scaled.astype(float)), 600.0, rtol=1e-6)
    with pytest.raises(ValueError, match="smallest normal float32"):
        mix_at_snr(speech.astype(np.float32), noise.astype(np.float32), 800.0)


def test_mix_at_snr_mixture_overflow_is_a_clear_error():
    speech = np.full(10, 1e308)
    with pytest.raises(ValueError, match="overflows float64"):
        mix_at_snr(speech, np.ones(10), -3.0)


@pytest.mark.parametrize("n", [1, 50, 99, 100, 101, 199, 200, 201, 8000, 8001, 12345])
def test_stft_equals_scipy_short_time_fft(n):
    # The batched framing must reproduce ShortTimeFFT.stft exactly (its
    # canonical dual window is what istft inverts).
    from scipy.signal import ShortTimeFFT
    from scipy.signal.windows import hann

    x = np.random.default_rng(n).standard_normal(n)
    op = ShortTimeFFT(np.sqrt(hann(200, sym=False)), 80, fs=8000, fft_mode="onesided", mfft=256)
    padded = np.pad(x, (0, max(0, 100 - n)))
    assert_allclose(stft(x), op.stft(padded).T, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------
# Training targets (issue 12: phase-sensitive target)
# --------------------------------------------------------------------------
def test_phase_sensitive_target_is_the_clipped_in_phase_part():
    from sklearn_unfold.audio import source_magnitudes

    rng = np.random.default_rng(0)
    S = rng.standard_normal((40, 7)) + 1j * rng.standard_normal((40, 7))
    M = S + rng.standard_normal((40, 7)) + 1j * rng.standard_normal((40, 7))
    M[0, :3] = 0.0  # a silent bin: the clip range is {0}
    # Reference from the definition, with angles (Erdogan et al. 2015).
    expected = np.clip(np.abs(S) * np.cos(np.angle(S) - np.angle(M)), 0.0, np.abs(M))
    got = source_magnitudes(S, M, "phase_sensitive")
    assert got.dtype == np.float64 and np.all(np.isfinite(got))
    assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.all(got[0, :3] == 0.0)
    assert np.any(got == 0.0) and np.any(got == np.abs(M))  # both clips are active somewhere
    # A source that is the whole mixture gets |M|; one in anti-phase gets 0.
    assert_allclose(source_magnitudes(M, M, "phase_sensitive"), np.abs(M), rtol=1e-12)
    assert np.all(source_magnitudes(-M, M, "phase_sensitive") == 0.0)
    assert_array_equal(source_magnitudes(S, M), np.abs(S))
    single = source_magnitudes(S.astype(np.complex64), M.astype(np.complex64), "phase_sensitive")
    assert single.dtype == np.float32
    with pytest.raises(ValueError, match="target must be one of"):
        source_magnitudes(S, M, "ideal")
