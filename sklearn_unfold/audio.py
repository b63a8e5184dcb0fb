"""Short-time Fourier analysis, context stacking and mixing at an SNR.

The feature extraction of Hershey, Le Roux and Weninger (2014), sec. 5.1:
spectral magnitudes from a 25 ms square-root Hann window shifted by 10 ms,
with ``T`` frames of left context stacked into each feature vector.

Frames are rows everywhere, as ``X`` in scikit-learn: an STFT is an array of
shape ``(n_frames, n_freqs)`` and a context-stacked feature matrix is
``(n_frames, n_context * n_freqs)``. At the default 8 kHz sampling rate the
window is 200 samples, the hop 80 samples and the 256-point FFT gives
``n_freqs = 129``.

References
----------
.. [1] J. R. Hershey, J. Le Roux and F. Weninger, "Deep unfolding:
   model-based inspiration of novel deep architectures", MERL TR2014-117,
   2014, sec. 5.1.
"""

import functools
from numbers import Integral, Real

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import ShortTimeFFT
from scipy.signal.windows import hann
from sklearn.utils import check_array

from ._compat import Interval, validate_params

__all__ = [
    "SAMPLE_RATE",
    "istft",
    "mix_at_snr",
    "n_stft_frames",
    "resynthesize",
    "source_magnitudes",
    "stack_context",
    "stft",
]

SAMPLE_RATE = 8000

_STFT_CONSTRAINTS = {
    "sample_rate": [Interval(Real, 0, None, closed="neither")],
    "window_ms": [Interval(Real, 0, None, closed="neither")],
    "hop_ms": [Interval(Real, 0, None, closed="neither")],
    "n_fft": [Interval(Integral, 1, None, closed="left")],
}


# --------------------------------------------------------------------------
# The analysis / synthesis operator
# --------------------------------------------------------------------------


def _ms_to_samples(ms, sample_rate, name):
    """Duration in ms -> whole number of samples; refuse fractional ones."""
    n = ms * sample_rate / 1000.0
    n_int = round(n)
    if n_int < 1 or abs(n - n_int) > 1e-9 * max(1.0, n):
        raise ValueError(
            f"{name}={ms} ms at sample_rate={sample_rate} Hz is {n} samples; "
            "it must be a positive whole number of samples."
        )
    return n_int


@functools.lru_cache(maxsize=16)
def _operator(win_len, hop, n_fft, sample_rate):
    # Periodic sqrt-Hann: its square is the periodic Hann window. At hop 80 /
    # length 200 the squared window does not overlap-add to a constant, so
    # synthesis uses ShortTimeFFT's canonical dual window, which restores
    # perfect reconstruction wherever all overlapping frames are present.
    win = np.sqrt(hann(win_len, sym=False))
    return ShortTimeFFT(win, hop, fs=sample_rate, fft_mode="onesided", mfft=n_fft)


def _get_operator(sample_rate, window_ms, hop_ms, n_fft):
    win_len = _ms_to_samples(window_ms, sample_rate, "window_ms")
    hop = _ms_to_samples(hop_ms, sample_rate, "hop_ms")
    if n_fft < win_len:
        raise ValueError(
            f"n_fft={n_fft} is shorter than the window ({win_len} samples); "
            "it must be at least as long."
        )
    if hop > win_len:
        raise ValueError(
            f"hop_ms gives a hop of {hop} samples, longer than the window "
            f"({win_len} samples): samples between frames would be lost."
        )
    return _operator(win_len, hop, n_fft, float(sample_rate))


def _padded_length(op, n_samples):
    # ShortTimeFFT needs at least half a window of signal; shorter signals
    # are zero-padded to that length (and cut back after synthesis).
    return max(n_samples, op.m_num - op.m_num_mid)


@validate_params(
    {"n_samples": [Interval(Integral, 1, None, closed="left")], **_STFT_CONSTRAINTS},
    prefer_skip_nested_validation=True,
)
def n_stft_frames(n_samples, *, sample_rate=SAMPLE_RATE, window_ms=25.0, hop_ms=10.0, n_fft=256):
    """Number of STFT frames (rows) that :func:`stft` returns for a signal.

    The frames are centred on multiples of the hop and cover every position
    where the non-zero part of the window overlaps the signal (zero-padded to
    at least half a window), including the frames that hang over both ends:
    they are needed for perfect reconstruction at the edges. With the
    defaults (window 200 samples whose first value is 0, hop 80) frame ``t``
    is centred on sample ``80 * (t - 1)`` and there are
    ``(max(n_samples, 100) + 98) // 80 + 2`` frames.

    Parameters
    ----------
    n_samples : int
        Length of the signal in samples.
    sample_rate, window_ms, hop_ms, n_fft
        As in :func:`stft`.

    Returns
    -------
    n_frames : int

    Examples
    --------
    >>> from sklearn_unfold.audio import n_stft_frames
    >>> n_stft_frames(8000)
    103
    """
    op = _get_operator(sample_rate, window_ms, hop_ms, n_fft)
    return int(op.p_max(_padded_length(op, n_samples)) - op.p_min)


# --------------------------------------------------------------------------
# STFT / iSTFT
# --------------------------------------------------------------------------


@validate_params(
    {"x": ["array-like"], **_STFT_CONSTRAINTS},
    prefer_skip_nested_validation=True,
)
def stft(x, *, sample_rate=SAMPLE_RATE, window_ms=25.0, hop_ms=10.0, n_fft=256):
    """Short-time Fourier transform with frames as rows.

    Square-root Hann analysis window of ``window_ms`` (periodic), hop of
    ``hop_ms``, zero-padded ``n_fft``-point FFT, as in sec. 5.1 of [1]_. The
    frames hang over both ends of the signal (see :func:`n_stft_frames`) so
    that :func:`istft` reconstructs the signal exactly, edges included.

    The phase reference of each frame is the window centre::

        Z[t, f] = sum_m w[m] x[c_t - M//2 + m] exp(-2j pi f (m - M//2) / n_fft)

    where ``M`` is the window length, ``c_t`` the frame centre and samples
    outside the signal are zero.

    Parameters
    ----------
    x : array-like of shape (n_samples,)
        Real waveform. float32 stays float32 (the result is complex64);
        other dtypes are computed in float64.
    sample_rate : float, default=8000
        Sampling rate in Hz.
    window_ms : float, default=25.0
        Window length in ms; must be a whole number of samples.
    hop_ms : float, default=10.0
        Window shift in ms; must be a whole number of samples.
    n_fft : int, default=256
        FFT length (at least the window length).

    Returns
    -------
    Z : ndarray of shape (n_frames, n_fft // 2 + 1), complex
        The STFT; ``np.abs(Z)`` are the magnitudes used as features.

    References
    ----------
    .. [1] J. R. Hershey, J. Le Roux and F. Weninger, "Deep unfolding:
       model-based inspiration of novel deep architectures", 2014, sec. 5.1.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.audio import stft, istft
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> Z = stft(x)
    >>> Z.shape
    (103, 129)
    >>> bool(np.allclose(istft(Z, length=len(x)), x))
    True
    """
    x = check_array(x, ensure_2d=False, dtype=(np.float64, np.float32), input_name="x")
    if x.ndim != 1:
        raise ValueError(f"x must be a 1-D waveform; got an array of shape {x.shape}.")
    op = _get_operator(sample_rate, window_ms, hop_ms, n_fft)
    out_dtype = np.complex64 if x.dtype == np.float32 else np.complex128
    x = np.asarray(x, dtype=np.float64)
    n_pad = _padded_length(op, x.shape[0])
    if n_pad > x.shape[0]:
        x = np.pad(x, (0, n_pad - x.shape[0]))
    return _frames_rfft(op, x).astype(out_dtype, copy=False)


def _frames_rfft(op, x):
    """``op.stft(x).T`` computed with one batched FFT instead of a loop over slices.

    Slice ``p`` (``p_min <= p < p_max``) is the window times
    ``x[p * hop - m_num_mid : p * hop - m_num_mid + m_num]`` (zeros outside
    the signal), zero-padded to ``mfft`` and rolled so that its centre is at
    index 0 (ShortTimeFFT's ``phase_shift=0`` convention). The tests check
    that this equals ``ShortTimeFFT.stft`` exactly.
    """
    p_min, p_max = op.p_min, op.p_max(x.shape[0])
    offset = p_min * op.hop - op.m_num_mid  # first sample of the first slice (<= 0)
    n_total = (p_max - 1) * op.hop - op.m_num_mid + op.m_num - offset
    padded = np.zeros(max(n_total, x.shape[0] - offset))
    padded[-offset : -offset + x.shape[0]] = x
    frames = sliding_window_view(padded, op.m_num)[:: op.hop][: p_max - p_min]
    return _windowed_rfft(op, frames)


def _windowed_rfft(op, frames):
    """Spectra of signal slices (rows of ``frames``, ``m_num`` samples each) as ``op`` computes them.

    Each slice is windowed, zero-padded to ``mfft`` and rolled so that its
    centre is at index 0 (ShortTimeFFT's ``phase_shift=0`` convention).
    """
    segments = np.zeros((frames.shape[0], op.mfft))
    segments[:, : op.m_num] = frames * op.win
    segments = np.roll(segments, -((op.phase_shift + op.m_num_mid) % op.m_num), axis=1)
    return np.fft.rfft(segments, axis=1)


def _windowed_irfft(op, spectra):
    """The inverse of :func:`_windowed_rfft` up to overlap-add: slices times the dual window.

    Summing slice ``p`` at sample ``p * hop - m_num_mid`` for every ``p``
    is what ``op.istft`` does.
    """
    slices = np.roll(np.fft.irfft(spectra, n=op.mfft, axis=1), (op.phase_shift + op.m_num_mid) % op.m_num, axis=1)
    return slices[:, : op.m_num] * op.dual_win


@validate_params(
    {
        "Z": ["array-like"],
        "length": [Interval(Integral, 1, None, closed="left")],
        **_STFT_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def istft(Z, *, length, sample_rate=SAMPLE_RATE, window_ms=25.0, hop_ms=10.0, n_fft=256):
    """Inverse of :func:`stft`: overlap-add with the canonical dual window.

    Parameters
    ----------
    Z : array-like of shape (n_frames, n_fft // 2 + 1), complex
        STFT laid out as :func:`stft` returns it; ``n_frames`` must equal
        ``n_stft_frames(length)``.
    length : int
        Number of samples of the waveform to return.
    sample_rate, window_ms, hop_ms, n_fft
        As in :func:`stft`.

    Returns
    -------
    x : ndarray of shape (length,)
        Real waveform; float32 when ``Z`` is complex64 (or float32),
        float64 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.audio import stft, istft
    >>> x = np.sin(np.arange(500) / 7.0)
    >>> bool(np.max(np.abs(istft(stft(x), length=500) - x)) < 1e-12)
    True
    """
    Z = np.asarray(Z)
    if not (np.issubdtype(Z.dtype, np.complexfloating) or np.issubdtype(Z.dtype, np.floating)):
        raise ValueError(f"Z must hold complex (or real) floats; got dtype {Z.dtype}.")
    op = _get_operator(sample_rate, window_ms, hop_ms, n_fft)
    n_freqs = op.f_pts
    n_frames = int(op.p_max(_padded_length(op, length)) - op.p_min)
    if Z.ndim != 2 or Z.shape != (n_frames, n_freqs):
        raise ValueError(
            f"Z must have shape (n_frames, n_freqs) = ({n_frames}, {n_freqs}) for "
            f"length={length}; got shape {Z.shape}."
        )
    if not np.all(np.isfinite(Z)):
        raise ValueError("Z contains NaN or infinity.")
    out_dtype = np.float32 if Z.dtype in (np.complex64, np.float32) else np.float64
    x = op.istft(np.asarray(Z, dtype=np.complex128).T, k1=_padded_length(op, length))
    return np.ascontiguousarray(x[:length], dtype=out_dtype)


@validate_params(
    {
        "magnitude": ["array-like"],
        "mixture_stft": ["array-like"],
        "length": [Interval(Integral, 1, None, closed="left")],
        **_STFT_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def resynthesize(
    magnitude,
    mixture_stft,
    *,
    length,
    sample_rate=SAMPLE_RATE,
    window_ms=25.0,
    hop_ms=10.0,
    n_fft=256,
):
    """Waveform from an estimated magnitude and the mixture's phase.

    Computes ``istft(magnitude * exp(1j * angle(mixture_stft)))``, the usual
    way to turn an enhanced spectral magnitude back into audio [1]_. Bins
    where the mixture is exactly zero get phase 0.

    Parameters
    ----------
    magnitude : array-like of shape (n_frames, n_freqs)
        Non-negative estimated magnitude (e.g. the speech columns of a
        prediction).
    mixture_stft : array-like of shape (n_frames, n_freqs), complex
        :func:`stft` of the mixture the magnitude was estimated from.
    length : int
        Number of samples of the output (the mixture's length).
    sample_rate, window_ms, hop_ms, n_fft
        As in :func:`stft`.

    Returns
    -------
    y : ndarray of shape (length,)
        float32 when ``magnitude`` is float32 and ``mixture_stft`` complex64,
        float64 otherwise.

    References
    ----------
    .. [1] J. R. Hershey, J. Le Roux and F. Weninger, "Deep unfolding:
       model-based inspiration of novel deep architectures", 2014, sec. 5.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.audio import stft, resynthesize
    >>> x = np.random.default_rng(0).standard_normal(1000)
    >>> Z = stft(x)
    >>> y = resynthesize(0.5 * np.abs(Z), Z, length=1000)
    >>> bool(np.allclose(y, 0.5 * x))
    True
    """
    mag = check_array(magnitude, dtype=(np.float64, np.float32), input_name="magnitude")
    Z = np.asarray(mixture_stft)
    if Z.shape != mag.shape:
        raise ValueError(
            f"magnitude has shape {mag.shape} but mixture_stft has shape {Z.shape}; "
            "they must match."
        )
    if np.any(mag < 0):
        raise ValueError("magnitude must be non-negative.")
    if not np.all(np.isfinite(Z)):
        raise ValueError("mixture_stft contains NaN or infinity.")
    single = mag.dtype == np.float32 and Z.dtype == np.complex64
    Z = np.asarray(Z, dtype=np.complex128)
    abs_Z = np.abs(Z)
    # Unit phasor of the mixture; dividing by |Z| only where it is non-zero.
    phase = np.divide(Z, abs_Z, out=np.ones_like(Z), where=abs_Z > 0)
    y = istft(
        mag.astype(np.float64) * phase,
        length=length,
        sample_rate=sample_rate,
        window_ms=window_ms,
        hop_ms=hop_ms,
        n_fft=n_fft,
    )
    return y.astype(np.float32) if single else y


# --------------------------------------------------------------------------
# Training targets
# --------------------------------------------------------------------------
TARGETS = ("magnitude", "phase_sensitive")


def source_magnitudes(source_stft, mixture_stft, target="magnitude"):
    """The magnitudes a separator is trained to output for one source.

    Parameters
    ----------
    source_stft : ndarray of shape (n_frames, F), complex
        STFT of the source (speech or noise).
    mixture_stft : ndarray of shape (n_frames, F), complex
        STFT of the mixture, same frames.
    target : {"magnitude", "phase_sensitive"}, default="magnitude"
        ``"magnitude"``: ``|S|``. ``"phase_sensitive"``: the phase-sensitive
        target of [1]_, ``|S| cos(angle(S) - angle(M))`` clipped to
        ``[0, |M|]``: the part of the source in phase with the mixture,
        which is all a filter of the mixture's magnitude, resynthesized with
        the mixture's phase, can recover. Computed as ``Re(S conj(M)) / |M|``
        (0 where ``|M| = 0``).

    Returns
    -------
    magnitudes : ndarray of shape (n_frames, F), real
        float32 for complex64 input, float64 otherwise.

    References
    ----------
    .. [1] H. Erdogan, J. R. Hershey, S. Watanabe, J. Le Roux,
       "Phase-sensitive and recognition-boosted speech separation using
       deep recurrent neural networks", ICASSP 2015.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")
    if target == "magnitude":
        return np.abs(source_stft)
    mixture_magnitude = np.abs(mixture_stft)
    in_phase = (source_stft * np.conj(mixture_stft)).real
    # Divide only where |M| > 0; elsewhere the clip range [0, |M|] is {0}.
    np.divide(in_phase, mixture_magnitude, out=in_phase, where=mixture_magnitude > 0)
    in_phase[mixture_magnitude == 0] = 0.0
    return np.clip(in_phase, 0.0, mixture_magnitude, out=in_phase)


# --------------------------------------------------------------------------
# Context stacking
# --------------------------------------------------------------------------


@validate_params(
    {"S": ["array-like"], "n_context": [Interval(Integral, 1, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def stack_context(S, n_context):
    """Stack ``n_context`` frames of left context into each row.

    Row ``t`` of the result is ``[S[t-T+1], ..., S[t-1], S[t]]`` with
    ``T = n_context``: the context ends with the target frame, so the last
    ``F`` columns are the frame itself (sec. 5.1 of [1]_, ``T = 9`` there).
    Frames before the start do not exist; they are filled by repeating the
    first frame ``S[0]``, so the first rows see a stationary past.

    Parameters
    ----------
    S : array-like of shape (n_frames, F)
        Frames as rows (e.g. STFT magnitudes). Any dtype; it is kept.
    n_context : int
        Number of frames per row, ``T >= 1``. ``1`` returns a copy of ``S``.

    Returns
    -------
    X : ndarray of shape (n_frames, n_context * F)

    References
    ----------
    .. [1] J. R. Hershey, J. Le Roux and F. Weninger, "Deep unfolding:
       model-based inspiration of novel deep architectures", 2014, sec. 5.1.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.audio import stack_context
    >>> stack_context(np.array([[1], [2], [3]]), 2)
    array([[1, 1],
           [1, 2],
           [2, 3]])
    """
    S = np.asarray(S)
    if S.ndim != 2 or S.shape[0] == 0:
        raise ValueError(
            f"S must be a 2-D array (n_frames, F) with at least one frame; got shape {S.shape}."
        )
    if n_context == 1:
        return S.copy()
    n_frames, n_freqs = S.shape
    padded = np.concatenate([np.repeat(S[:1], n_context - 1, axis=0), S], axis=0)
    # (n_frames, F, T) view -> (n_frames, T, F) -> rows; the reshape copies.
    windows = sliding_window_view(padded, n_context, axis=0)
    return windows.transpose(0, 2, 1).reshape(n_frames, n_context * n_freqs)


# --------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------


@validate_params(
    {
        "speech": ["array-like"],
        "noise": ["array-like"],
        "snr_db": [Interval(Real, None, None, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def mix_at_snr(speech, noise, snr_db):
    """Scale ``noise`` so that the speech-to-noise ratio is ``snr_db`` and add it.

    The ratio is the energy ratio over the whole utterance:
    ``10 * log10(sum(speech**2) / sum(scaled_noise**2)) == snr_db``.

    Parameters
    ----------
    speech : array-like of shape (n_samples,)
        Clean speech waveform (non-zero energy).
    noise : array-like of shape (n_samples,)
        Noise excerpt of the same length (non-zero energy).
    snr_db : float
        Target signal-to-noise ratio in dB (finite).

    Returns
    -------
    mixture : ndarray of shape (n_samples,)
        ``speech + scaled_noise``, rounded to the output dtype.
    scaled_noise : ndarray of shape (n_samples,)
        The noise after scaling. float32 when both inputs are float32.

    Raises
    ------
    ValueError
        If the shapes differ, an input holds NaN or infinity or has zero
        energy, ``snr_db`` is not finite, or the SNR cannot be represented in
        the output dtype: the scaled noise (or the mixture) would overflow, or
        the noise would have to shrink below the smallest normal number (for
        float64 about 2.2e-308), where its energy, hence the SNR, is lost. With
        signals of ordinary scale this happens only for |snr_db| in the
        thousands of dB (``snr_db=1e6`` is always refused); every SNR that
        does not raise is met to rounding.

    Notes
    -----
    The energies are computed on copies of the signals scaled to unit peak,
    and the noise's gain is applied as a power of two in one exact step
    (:func:`numpy.ldexp`), so signals of any magnitude work: speech at 1e300
    or noise at 1e-200 give the asked SNR, not ``inf`` or a false "zero
    energy".

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.audio import mix_at_snr
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(800), rng.standard_normal(800)
    >>> mixture, scaled = mix_at_snr(s, n, 3.0)
    >>> round(float(10 * np.log10(np.sum(s**2) / np.sum(scaled**2))), 6)
    3.0
    """
    speech = check_array(
        speech, ensure_2d=False, dtype=(np.float64, np.float32), input_name="speech"
    )
    noise = check_array(noise, ensure_2d=False, dtype=(np.float64, np.float32), input_name="noise")
    if speech.ndim != 1 or noise.shape != speech.shape:
        raise ValueError(
            "speech and noise must be 1-D waveforms of the same length; got shapes "
            f"{speech.shape} and {noise.shape}."
        )
    dtype = np.result_type(speech.dtype, noise.dtype)
    speech64, noise64 = speech.astype(np.float64), noise.astype(np.float64)
    peak_speech, peak_noise = np.max(np.abs(speech64)), np.max(np.abs(noise64))
    if peak_noise == 0.0:
        raise ValueError("noise has zero energy; it cannot be scaled to an SNR.")
    if peak_speech == 0.0:
        raise ValueError("speech has zero energy; the SNR is undefined.")
    # Unit-peak copies: their energies lie in [1, n_samples], so squaring can
    # neither overflow (speech at 1e300) nor underflow (noise at 1e-200).
    unit_speech, unit_noise = speech64 / peak_speech, noise64 / peak_noise
    energy_ratio = np.dot(unit_speech, unit_speech) / np.dot(unit_noise, unit_noise)
    # scaled = unit_noise * peak_speech * sqrt(energy_ratio) * 10**(-snr_db / 20).
    # Writing peak_speech = m 2**e and 10**(-snr_db / 20) = 2**(k + f), with
    # integer e, k, only the exact power-of-two step can leave the float range,
    # and it does so only when the result itself is out of range.
    mantissa, exponent = np.frexp(peak_speech)
    log2_gain = -float(snr_db) / 20.0 * np.log2(10.0)
    whole = np.floor(log2_gain)
    factor = mantissa * np.sqrt(energy_ratio) * 2.0 ** (log2_gain - whole)
    # Far beyond any float range either way; keeps the int in C range.
    shift = int(np.clip(exponent + whole, -10_000, 10_000))
    with np.errstate(over="ignore", under="ignore"):
        scaled64 = np.ldexp(unit_noise * factor, shift)
        scaled = scaled64.astype(dtype, copy=False)
        mixture = (speech64 + scaled64).astype(dtype, copy=False)
    info = np.finfo(dtype)
    # log10 of the peak the scaled noise needs, for the message.
    needed = np.log10(peak_speech) + 0.5 * np.log10(energy_ratio) - float(snr_db) / 20.0
    if not np.all(np.isfinite(scaled)):
        raise ValueError(
            f"snr_db={snr_db} cannot be met in {dtype}: the noise would have to be scaled to "
            f"a peak of about 10**{needed:.1f}, above the largest {dtype} ({info.max:.3g})."
        )
    if np.max(np.abs(scaled)) < info.tiny:
        raise ValueError(
            f"snr_db={snr_db} cannot be met in {dtype}: the noise would have to be scaled to "
            f"a peak of about 10**{needed:.1f}, below the smallest normal {dtype} "
            f"({info.tiny:.3g}), where its energy is lost."
        )
    if not np.all(np.isfinite(mixture)):
        raise ValueError(
            f"speech + noise at snr_db={snr_db} overflows {dtype} (largest {info.max:.3g}); "
            "scale the signals down first."
        )
    return mixture, scaled
