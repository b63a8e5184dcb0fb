"""Separation and speech quality: BSS-Eval SDR, SI-SDR, PESQ, STOI, spectral SDR, scorers.

The paper evaluates speech enhancement with the source-to-distortion ratio (SDR) of
BSS-Eval [1]_ computed on waveforms; :func:`sdr` reproduces
``mir_eval.separation.bss_eval_sources(..., compute_permutation=False)`` an order of
magnitude faster. :func:`si_sdr` is the scale-invariant SDR of [2]_.
:func:`magnitude_sdr` measures the same energy ratio on spectral features, which is what
an estimator that predicts source magnitudes can be scored with inside
:class:`~sklearn.model_selection.GridSearchCV` (:func:`sdr_scorer`,
:func:`make_sdr_scorer`).

:func:`pesq` (perceptual quality, ITU-T P.862 / P.862.2) and :func:`stoi`
(intelligibility, STOI and ESTOI) wrap the PyPI packages ``pesq`` and ``pystoi``, which
are the optional extra ``speech`` (``pip install "sklearn_unfold[speech]"``); they are
imported when called, so the rest of the module works without them. Estimators that
predict waveforms, such as :class:`~sklearn_unfold.SpeechEnhancer`, are scored with any
of these metrics by :func:`make_waveform_scorer`, :data:`pesq_scorer` and
:data:`stoi_scorer`.

All ratios are computed in float64 and kept finite: every energy ratio is evaluated as
``10 log10((num + f) / (den + f))`` with ``f = eps * (num + den) + tiny`` (float64
``eps`` and ``tiny``), so values lie within about +/-156.5 dB (``10 log10(1 / eps)``), a
perfect estimate scores about +156.5 dB and an all-zero estimate 0 dB.

References
----------
.. [1] E. Vincent, R. Gribonval and C. Fevotte, "Performance measurement in blind
   audio source separation", IEEE Trans. Audio, Speech, Lang. Process., 14(4),
   pp. 1462-1469, 2006.
.. [2] J. Le Roux, S. Wisdom, H. Erdogan and J. R. Hershey, "SDR - half-baked or
   well done?", Proc. ICASSP, pp. 626-630, 2019.
"""

import importlib
import math
import warnings
from numbers import Integral, Real

import numpy as np
from scipy import fft as sp_fft
from scipy.linalg import LinAlgError, lstsq, solve_toeplitz, toeplitz
from scipy.signal import resample_poly
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array

from ._compat import Interval, StrOptions, validate_params
from ._nmf.layout import scoring_targets
from ._nmf.network import NetworkSpec

__all__ = [
    "sdr",
    "si_sdr",
    "pesq",
    "stoi",
    "magnitude_sdr",
    "sdr_scorer",
    "make_sdr_scorer",
    "make_waveform_scorer",
    "pesq_scorer",
    "stoi_scorer",
    "target_frames",
]

_EPS = np.finfo(np.float64).eps
_TINY = np.finfo(np.float64).tiny


# --------------------------------------------------------------------------------------
# Array helpers
# --------------------------------------------------------------------------------------


def _ratio_db(signal_energy, error_energy):
    """``10 log10(signal / error)`` with both energies floored, so it stays finite.

    The floor ``eps * (signal + error) + tiny`` scales with the estimate, which keeps
    the ratio scale invariant; it caps a perfect estimate at ``10 log10(1 / eps)``
    (about 156.5 dB), an estimate with no target part at minus that, and gives 0 dB
    when both energies are zero (an all-zero estimate).
    """
    floor = _EPS * (signal_energy + error_energy) + _TINY
    return 10.0 * np.log10((signal_energy + floor) / (error_energy + floor))


def _unit_peak(signals):
    """Rows divided by their peak magnitude; all-zero rows are left as they are.

    Every waveform metric here is invariant to scaling the reference or the estimate,
    and this keeps sums of squares clear of overflow and underflow.
    """
    peak = np.max(np.abs(signals), axis=1, keepdims=True)
    return signals / np.where(peak > 0, peak, 1.0)


def _check_waveforms(reference, estimate):
    """Validate a reference / estimate pair of waveforms.

    Returns
    -------
    reference, estimate : ndarray of shape (n_sources, n_samples), float64
        New arrays, each row scaled to unit peak magnitude.
    one_dimensional : bool
        Whether the inputs were 1-D (one source).
    """
    reference = check_array(
        reference, ensure_2d=False, dtype=np.float64, input_name="reference"
    )
    estimate = check_array(
        estimate, ensure_2d=False, dtype=np.float64, input_name="estimate"
    )
    if reference.shape != estimate.shape:
        raise ValueError(
            "reference and estimate must have the same shape (n_samples,) or "
            f"(n_sources, n_samples); got {reference.shape} and {estimate.shape}."
        )
    one_dimensional = reference.ndim == 1
    reference, estimate = np.atleast_2d(reference), np.atleast_2d(estimate)
    silent = ~np.any(reference != 0, axis=1)
    if np.any(silent):
        raise ValueError(
            f"reference source(s) {np.flatnonzero(silent).tolist()} are all zero: the "
            "SDR against a silent reference is undefined."
        )
    return _unit_peak(reference), _unit_peak(estimate), one_dimensional


def _solve_symmetric_toeplitz(first_columns, rhs):
    """Solve ``toeplitz(first_columns[i]) @ x[i] = rhs[i]`` for every row ``i``.

    Levinson recursion (O(L**2)) needs non-singular leading minors, which holds for the
    Gram matrix of the delayed copies of any non-zero signal; should it still fail
    numerically, the row falls back to a dense least-squares solve, as mir_eval does for
    singular systems.
    """
    solution = np.empty_like(rhs)
    for i, (column, target) in enumerate(zip(first_columns, rhs, strict=True)):
        try:
            with np.errstate(all="ignore"):
                row = solve_toeplitz(column, target, check_finite=False)
        except LinAlgError:
            row = None
        if row is None or not np.all(np.isfinite(row)):
            row = lstsq(toeplitz(column), target)[0]
        solution[i] = row
    return solution


def _project_on_delays(reference, estimate, filter_length):
    """Least-squares projection of each estimate onto delayed copies of its reference.

    Row ``j`` of the result is ``h_j * reference[j]`` (full convolution, length
    ``n_samples + filter_length - 1``) for the FIR filter ``h_j`` of ``filter_length``
    taps that best fits ``estimate[j]``: the allowed time-invariant distortion of
    BSS-Eval ([1]_, sec. III.B). The normal equations ``G h = d`` are built from FFT
    correlations: ``G`` is the symmetric Toeplitz matrix of the reference's
    autocorrelation at lags ``0 .. filter_length - 1`` and ``d`` its cross-correlation
    with the estimate.
    """
    n_samples = reference.shape[1]
    n_out = n_samples + filter_length - 1
    # n_fft >= n_out makes the circular correlations and convolution linear ones.
    n_fft = sp_fft.next_fast_len(n_out, real=True)
    reference_f = sp_fft.rfft(reference, n_fft, axis=1)
    estimate_f = sp_fft.rfft(estimate, n_fft, axis=1)
    autocorr = sp_fft.irfft(np.abs(reference_f) ** 2, n_fft, axis=1)[:, :filter_length]
    crosscorr = sp_fft.irfft(np.conj(reference_f) * estimate_f, n_fft, axis=1)
    filters = _solve_symmetric_toeplitz(autocorr, crosscorr[:, :filter_length])
    filtered = sp_fft.irfft(sp_fft.rfft(filters, n_fft, axis=1) * reference_f, n_fft)
    return filtered[:, :n_out]


# --------------------------------------------------------------------------------------
# Waveform metrics
# --------------------------------------------------------------------------------------


@validate_params(
    {
        "reference": ["array-like"],
        "estimate": ["array-like"],
        "filter_length": [Interval(Integral, 1, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def sdr(reference, estimate, *, filter_length=512):
    """BSS-Eval source-to-distortion ratio (SDR) of waveform estimates, in dB.

    The estimate ``s_hat`` of source ``j`` is split into ``s_target``, its
    least-squares fit by the reference ``s_j`` filtered with an FIR filter of
    ``filter_length`` taps, and the rest ``e = s_hat - s_target`` (interference plus
    artifacts); the SDR is ``10 log10(||s_target||**2 / ||e||**2)`` ([1]_, eq. 4 and
    sec. III.B with time-invariant filters). This equals the SDR of
    ``mir_eval.separation.bss_eval_sources(reference, estimate,
    compute_permutation=False)`` for ``filter_length=512``.

    Parameters
    ----------
    reference : array-like of shape (n_samples,) or (n_sources, n_samples)
        True source waveforms. No source may be all zero.
    estimate : array-like of the same shape as ``reference``
        Estimated waveforms; row ``j`` is scored against ``reference[j]``.
    filter_length : int, default=512
        Number of taps of the distortion filter allowed between reference and estimate.

    Returns
    -------
    sdr : float or ndarray of shape (n_sources,)
        SDR in dB: a float for 1-D input, one value per source for 2-D input. Values are
        kept finite (see Notes).

    Raises
    ------
    ValueError
        If the shapes differ, an input holds NaN or infinity, is empty or has more than
        two dimensions, or a reference source is all zero.

    See Also
    --------
    si_sdr : SDR allowing only a gain instead of a filter.
    magnitude_sdr : SDR of magnitude spectra.

    Notes
    -----
    BSS-Eval further splits ``e`` into interference (the part explained by delayed
    copies of all references) and artifacts, but their sum, and hence the SDR, only
    depends on the projection onto the delayed copies of ``reference[j]``: the other
    sources enter the SIR and SAR, which are not computed here. So each source needs one
    ``filter_length``-sized symmetric Toeplitz system, built from FFT correlations and
    solved by Levinson recursion (:func:`scipy.linalg.solve_toeplitz`), instead of the
    dense ``(n_sources * filter_length)``-sized systems mir_eval solves twice per
    source.

    Degenerate cases, where mir_eval raises or returns ``inf``: the ratio is evaluated
    as ``10 log10((num + f) / (den + f))`` with ``f = eps * (num + den) + tiny``
    (float64 constants). A perfect estimate (or one the filter fits exactly) scores
    about ``10 log10(1 / eps) = 156.5`` dB and an all-zero estimate 0 dB; for SDRs
    between -90 and +90 dB the floor changes the value by less than ``1e-6`` dB.

    References
    ----------
    .. [1] E. Vincent, R. Gribonval and C. Fevotte, "Performance measurement in blind
       audio source separation", IEEE Trans. Audio, Speech, Lang. Process., 14(4),
       pp. 1462-1469, 2006.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.metrics import sdr
    >>> rng = np.random.default_rng(0)
    >>> speech, noise = rng.standard_normal((2, 8000))
    >>> round(sdr(speech, speech + 0.1 * noise), 1)
    20.3
    >>> sdr(speech, -0.5 * speech) > 100  # a gain is a filter the metric allows
    True
    """
    reference, estimate, one_dimensional = _check_waveforms(reference, estimate)
    target = _project_on_delays(reference, estimate, filter_length)
    error = -target
    error[:, : estimate.shape[1]] += estimate
    ratio = _ratio_db(np.sum(target**2, axis=1), np.sum(error**2, axis=1))
    return float(ratio[0]) if one_dimensional else ratio


@validate_params(
    {"reference": ["array-like"], "estimate": ["array-like"]},
    prefer_skip_nested_validation=True,
)
def si_sdr(reference, estimate):
    """Scale-invariant source-to-distortion ratio (SI-SDR), in dB.

    With ``alpha = <s_hat, s> / ||s||**2`` the optimal gain on the reference ``s``,
    ``SI-SDR = 10 log10(||alpha s||**2 / ||alpha s - s_hat||**2)`` ([2]_, eq. 6).
    Unlike :func:`sdr`, no filtering of the reference is allowed, only a gain.

    Parameters
    ----------
    reference : array-like of shape (n_samples,) or (n_sources, n_samples)
        True source waveforms. No source may be all zero.
    estimate : array-like of the same shape as ``reference``
        Estimated waveforms; row ``j`` is scored against ``reference[j]``.

    Returns
    -------
    si_sdr : float or ndarray of shape (n_sources,)
        SI-SDR in dB: a float for 1-D input, one value per source for 2-D input,
        kept finite as in :func:`sdr` (within about +/-156.5 dB; 0 dB for an
        all-zero estimate).

    Raises
    ------
    ValueError
        If the shapes differ, an input holds NaN or infinity, is empty or has more than
        two dimensions, or a reference source is all zero.

    See Also
    --------
    sdr : BSS-Eval SDR, allowing a 512-tap distortion filter.

    Notes
    -----
    The signals are used as given; [2]_ assumes zero-mean signals, so subtract the means
    first to follow it exactly. SI-SDR equals ``sdr(reference, estimate,
    filter_length=1)``.

    References
    ----------
    .. [2] J. Le Roux, S. Wisdom, H. Erdogan and J. R. Hershey, "SDR - half-baked or
       well done?", Proc. ICASSP, pp. 626-630, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.metrics import si_sdr
    >>> reference = np.array([1.0, -1.0, 1.0, -1.0])
    >>> noise = np.array([1.0, 1.0, -1.0, -1.0])  # orthogonal to the reference
    >>> round(si_sdr(reference, 3.0 * (reference + 0.1 * noise)), 6)
    20.0
    """
    reference, estimate, one_dimensional = _check_waveforms(reference, estimate)
    gain = np.sum(reference * estimate, axis=1, keepdims=True) / np.sum(
        reference**2, axis=1, keepdims=True
    )
    target = gain * reference
    ratio = _ratio_db(
        np.sum(target**2, axis=1), np.sum((estimate - target) ** 2, axis=1)
    )
    return float(ratio[0]) if one_dimensional else ratio


# --------------------------------------------------------------------------------------
# Speech quality and intelligibility (optional extra "speech")
# --------------------------------------------------------------------------------------

_SPEECH_EXTRA = 'pip install "sklearn_unfold[speech]"'
# Rates PESQ is defined at, highest first: ITU-T P.862.2 (wide-band) and P.862 (narrow-band).
_PESQ_RATES = (16000, 8000)


def _import_speech_package(name, metric):
    """Import the optional package ``name``, or raise an ImportError naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"{metric} needs the optional package {name!r}, which could not be imported "
            f"({exc}). Install the 'speech' extra: {_SPEECH_EXTRA}"
        ) from exc


def _check_speech_waveforms(reference, estimate):
    """Validate a reference / estimate pair of single waveforms, as float64 (no copy)."""
    reference = check_array(
        reference, ensure_2d=False, dtype=np.float64, input_name="reference"
    )
    estimate = check_array(
        estimate, ensure_2d=False, dtype=np.float64, input_name="estimate"
    )
    for name, waveform in (("reference", reference), ("estimate", estimate)):
        if waveform.ndim != 1:
            raise ValueError(
                f"{name} must be a single 1-D waveform of shape (n_samples,); got shape "
                f"{waveform.shape}. Score several utterances one by one."
            )
    if reference.shape != estimate.shape:
        raise ValueError(
            "reference and estimate must have the same length; got "
            f"{reference.shape[0]} and {estimate.shape[0]} samples."
        )
    if not np.any(reference):
        raise ValueError("reference is all zero: speech quality is undefined against silence.")
    return reference, estimate


def _whole_rate(sample_rate):
    if not float(sample_rate).is_integer():
        raise ValueError(f"sample_rate must be a whole number of Hz; got {sample_rate!r}.")
    return int(sample_rate)


@validate_params(
    {
        "reference": ["array-like"],
        "estimate": ["array-like"],
        "sample_rate": [Interval(Real, 0, None, closed="neither")],
        "mode": [StrOptions({"nb", "wb"}), None],
    },
    prefer_skip_nested_validation=True,
)
def pesq(reference, estimate, *, sample_rate, mode=None):
    """Perceptual evaluation of speech quality (PESQ), as a MOS-LQO score.

    Wraps ``pesq.pesq`` of the PyPI package `pesq <https://pypi.org/project/pesq/>`_
    (the ITU-T reference C code): narrow-band PESQ (P.862 with the P.862.1 mapping) at
    8 kHz and wide-band PESQ (P.862.2) at 16 kHz [3]_. At 8000 and 16000 Hz the
    waveforms are passed on unchanged, so the value is exactly the package's.

    Parameters
    ----------
    reference : array-like of shape (n_samples,)
        Clean speech waveform; any scale (PESQ aligns the levels). Not all zero.
    estimate : array-like of shape (n_samples,)
        Degraded or enhanced speech waveform of the same length.
    sample_rate : int
        Sample rate of both waveforms in Hz, a whole number. PESQ is defined at 8000
        and 16000 Hz only; other rates are resampled with
        :func:`scipy.signal.resample_poly` to the highest of those not above
        ``sample_rate`` (16000 Hz from any higher rate, 8000 Hz from rates between);
        rates below 8000 Hz raise a ValueError. Resampling up is never done: it
        cannot add the band that a wide-band score would judge.
    mode : {"nb", "wb"} or None, default=None
        Narrow-band (``"nb"``) or wide-band (``"wb"``) PESQ. None picks ``"wb"`` when
        the signals are (resampled) at 16000 Hz and ``"nb"`` at 8000 Hz.
        ``"nb"`` at 16000 Hz is the package's narrow-band mode on 16 kHz input;
        ``"wb"`` needs ``sample_rate >= 16000``.

    Returns
    -------
    pesq : float
        MOS-LQO, from about 1.0 (bad) up to about 4.55 (narrow-band) or 4.64
        (wide-band), the scores of an estimate identical to the reference.

    Raises
    ------
    ValueError
        If an input is not 1-D, is empty or holds NaN or infinity, the lengths differ,
        the reference or the estimate is all zero, ``sample_rate`` is below 8000 Hz or
        not whole, ``mode="wb"`` with ``sample_rate < 16000``, or the PESQ code fails
        on the pair: signals shorter than 1/4 s, no utterance detected in the
        reference, or an estimate silent at float32 precision (hundreds of dB below the
        reference).
    ImportError
        If the package ``pesq`` is not installed (``pip install
        "sklearn_unfold[speech]"``).

    See Also
    --------
    stoi : Short-time objective intelligibility.
    make_waveform_scorer : PESQ as a scorer for model selection.

    References
    ----------
    .. [3] ITU-T Recommendation P.862.2, "Wideband extension to Recommendation P.862
       for the assessment of wideband telephone networks and speech codecs", 2007.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.metrics import pesq
    >>> sample_rate = 8000
    >>> t = np.arange(2 * sample_rate) / sample_rate
    >>> vowel = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 20))
    >>> speech = vowel * np.sin(2 * np.pi * t) ** 2  # two syllables
    >>> noise = np.random.default_rng(0).standard_normal(speech.size)
    >>> round(pesq(speech, speech, sample_rate=sample_rate), 2)  # narrow-band maximum
    4.55
    >>> pesq(speech, speech + 0.5 * noise, sample_rate=sample_rate) < 2.0
    True
    """
    package = _import_speech_package("pesq", "PESQ")
    reference, estimate = _check_speech_waveforms(reference, estimate)
    rate = _whole_rate(sample_rate)
    target = next((r for r in _PESQ_RATES if rate >= r), None)
    if target is None:
        raise ValueError(
            f"PESQ is defined at 8000 Hz (narrow-band) and 16000 Hz (wide-band); got "
            f"sample_rate={rate} Hz, below both. Resample the signals to 8000 Hz first, "
            "e.g. with scipy.signal.resample_poly."
        )
    if mode is None:
        mode = "wb" if target == 16000 else "nb"
    elif mode == "wb" and target != 16000:
        raise ValueError(
            f"Wide-band PESQ (mode='wb') needs sample_rate >= 16000 Hz; got {rate} Hz. "
            "Use mode='nb' or mode=None."
        )
    if not np.any(estimate):
        raise ValueError("estimate is all zero: PESQ is undefined for a silent estimate.")
    if rate != target:
        divisor = math.gcd(rate, target)
        up, down = target // divisor, rate // divisor
        reference = resample_poly(reference, up, down)
        estimate = resample_poly(estimate, up, down)
    try:
        return float(package.pesq(target, reference, estimate, mode))
    except package.OutOfMemoryError as exc:
        raise MemoryError(f"PESQ ran out of memory: {_pesq_message(exc)}") from exc
    except package.BufferTooShortError as exc:
        raise ValueError(
            f"PESQ needs at least 1/4 s of signal ({target // 4} samples at {target} Hz); "
            f"got {reference.shape[0]} samples ({_pesq_message(exc)})."
        ) from exc
    except package.NoUtterancesError as exc:
        raise ValueError(
            "PESQ detected no utterance in the reference (is it silent, or far quieter "
            f"than the estimate?) ({_pesq_message(exc)})."
        ) from exc
    except (package.PesqError, ValueError) as exc:
        # The C code divides by the estimate's power in float32: an estimate too quiet
        # to register there ends in "cannot convert float NaN to integer".
        raise ValueError(
            f"PESQ could not score this pair ({_pesq_message(exc)}); this happens when "
            "the estimate is silent at float32 precision (hundreds of dB below the "
            "reference)."
        ) from exc


def _pesq_message(exc):
    """The text of an error of the PESQ package, whose C messages are bytes."""
    message = exc.args[0] if exc.args else str(exc)
    if isinstance(message, bytes):
        message = message.decode("ascii", "replace")
    return str(message)


@validate_params(
    {
        "reference": ["array-like"],
        "estimate": ["array-like"],
        "sample_rate": [Interval(Real, 0, None, closed="neither")],
        "extended": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def stoi(reference, estimate, *, sample_rate, extended=False):
    """Short-time objective intelligibility (STOI), or extended STOI (ESTOI).

    Wraps ``pystoi.stoi`` of the PyPI package `pystoi
    <https://pypi.org/project/pystoi/>`_, a port of the reference MATLAB code of STOI
    [4]_ and ESTOI [5]_, with the waveforms passed on unchanged: the value is exactly
    the package's. The package resamples any rate to the 10 kHz the measure is defined
    at and drops the frames where the reference is more than 40 dB below its loudest
    frame.

    Parameters
    ----------
    reference : array-like of shape (n_samples,)
        Clean speech waveform. Not all zero.
    estimate : array-like of shape (n_samples,)
        Degraded or enhanced speech waveform of the same length.
    sample_rate : int
        Sample rate of both waveforms in Hz, any whole number.
    extended : bool, default=False
        Compute ESTOI [5]_ instead of STOI.

    Returns
    -------
    stoi : float
        Intelligibility score, at most 1 (an estimate identical to the reference);
        STOI is a mean correlation, ESTOI a mean of normalized spectral correlations.

    Raises
    ------
    ValueError
        If an input is not 1-D, is empty or holds NaN or infinity, the lengths differ,
        the reference is all zero, ``sample_rate`` is not whole, or the reference holds
        too little speech: the measure needs 30 frames (about 0.4 s) that are not
        silent. (``pystoi`` itself only warns there and returns ``1e-5``.)
    ImportError
        If the package ``pystoi`` is not installed (``pip install
        "sklearn_unfold[speech]"``).

    See Also
    --------
    pesq : Perceptual speech quality.
    make_waveform_scorer : STOI and ESTOI as scorers for model selection.

    References
    ----------
    .. [4] C. H. Taal, R. C. Hendriks, R. Heusdens and J. Jensen, "An algorithm for
       intelligibility prediction of time-frequency weighted noisy speech", IEEE Trans.
       Audio, Speech, Lang. Process., 19(7), pp. 2125-2136, 2011.
    .. [5] J. Jensen and C. H. Taal, "An algorithm for predicting the intelligibility of
       speech masked by modulated noise maskers", IEEE/ACM Trans. Audio, Speech, Lang.
       Process., 24(11), pp. 2009-2022, 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.metrics import stoi
    >>> sample_rate = 8000
    >>> t = np.arange(2 * sample_rate) / sample_rate
    >>> vowel = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 20))
    >>> speech = vowel * np.sin(2 * np.pi * t) ** 2  # two syllables
    >>> noise = np.random.default_rng(0).standard_normal(speech.size)
    >>> round(stoi(speech, speech, sample_rate=sample_rate), 6)
    1.0
    >>> noisy = stoi(speech, speech + noise, sample_rate=sample_rate)
    >>> stoi(speech, speech + 0.1 * noise, sample_rate=sample_rate) > noisy
    True
    """
    package = _import_speech_package("pystoi", "STOI")
    reference, estimate = _check_speech_waveforms(reference, estimate)
    rate = _whole_rate(sample_rate)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", message="Not enough STFT frames", category=RuntimeWarning
        )
        try:
            value = package.stoi(reference, estimate, rate, extended=extended)
        except RuntimeWarning as exc:
            if "Not enough STFT frames" not in str(exc):
                raise
            raise ValueError(
                "STOI needs at least 30 frames (about 0.4 s) of non-silent speech in the "
                f"reference; the {reference.shape[0]} samples at {rate} Hz hold fewer "
                f"(pystoi: {exc})."
            ) from exc
    return float(value)


# --------------------------------------------------------------------------------------
# Spectral metric and scorers
# --------------------------------------------------------------------------------------


@validate_params(
    {
        "y_true": ["array-like"],
        "y_pred": ["array-like"],
        "n_sources": [Interval(Integral, 1, None, closed="left")],
        "source": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def magnitude_sdr(y_true, y_pred, *, n_sources=1, source=0):
    """SDR of one source's magnitude spectrogram, in dB.

    ``10 log10(sum(S**2) / sum((S - S_hat)**2))`` over the columns of source
    ``source``, the magnitude-domain counterpart of the waveform SDR ([1]_, eq. 4,
    without the distortion filter).

    Parameters
    ----------
    y_true : array-like of shape (n_frames, n_sources * n_freqs)
        True source magnitudes: ``n_sources`` equal blocks of columns, source 0 first
        (e.g. speech, then noise), as estimators of this package predict them.
    y_pred : array-like of the same shape as ``y_true``
        Estimated source magnitudes, same layout.
    n_sources : int, default=1
        Number of column blocks.
    source : int, default=0
        Block to score, ``0 <= source < n_sources``.

    Returns
    -------
    sdr : float
        SDR in dB of block ``source``, kept finite as in :func:`sdr`: about 156.5 dB for
        a perfect estimate, 0 dB for an all-zero estimate, and about -156.5 dB when the
        true block is all zero but the estimate is not (0 dB when both are).

    Raises
    ------
    ValueError
        If the arrays are not 2-D, differ in shape, are empty, hold NaN or infinity, the
        column count is not a multiple of ``n_sources`` or ``source >= n_sources``.

    See Also
    --------
    sdr_scorer : This metric as a scorer for model selection.

    References
    ----------
    .. [1] E. Vincent, R. Gribonval and C. Fevotte, "Performance measurement in blind
       audio source separation", IEEE Trans. Audio, Speech, Lang. Process., 14(4),
       pp. 1462-1469, 2006.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.metrics import magnitude_sdr
    >>> speech = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> noise = np.ones((2, 2))
    >>> y_true = np.hstack([speech, noise])
    >>> y_pred = np.hstack([0.9 * speech, noise])
    >>> round(magnitude_sdr(y_true, y_pred, n_sources=2), 6)  # speech block
    20.0
    """
    y_true = check_array(y_true, dtype=np.float64, input_name="y_true")
    y_pred = check_array(y_pred, dtype=np.float64, input_name="y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape; got {y_true.shape} and "
            f"{y_pred.shape}."
        )
    n_columns = y_true.shape[1]
    if n_columns % n_sources:
        raise ValueError(
            f"The number of columns ({n_columns}) must be a multiple of n_sources "
            f"({n_sources}): y holds one block of frequencies per source."
        )
    if source >= n_sources:
        raise ValueError(f"source must be < n_sources={n_sources}; got {source}.")
    n_freqs = n_columns // n_sources
    block = slice(source * n_freqs, (source + 1) * n_freqs)
    true_block, pred_block = y_true[:, block], y_pred[:, block]
    # A common scale leaves the ratio unchanged and keeps the squares finite.
    peak = max(np.max(np.abs(true_block)), np.max(np.abs(pred_block)))
    if peak == 0:
        return 0.0
    true_block, pred_block = true_block / peak, pred_block / peak
    return float(
        _ratio_db(np.sum(true_block**2), np.sum((true_block - pred_block) ** 2))
    )


def _final_step(estimator):
    while isinstance(estimator, Pipeline):
        estimator = estimator[-1]
    return estimator


def _n_sources_of(estimator):
    """``n_sources_`` of a fitted estimator or of a pipeline's final step, else 1."""
    return getattr(_final_step(estimator), "n_sources_", 1)


def _score_magnitude_sdr(estimator, X, y, source):
    if y is None:
        raise ValueError(
            "The SDR scorer needs y, the true source magnitudes of shape "
            "(n_frames, n_sources * n_freqs); got y=None."
        )
    y_pred = estimator.predict(X)
    n_sources = _n_sources_of(estimator)
    y = check_array(y, ensure_2d=False)
    spec = getattr(_final_step(estimator), "_spec_", None)
    if isinstance(spec, NetworkSpec):
        # The DeepNMF family: the same layouts, and the same refusal of an
        # ambiguous width, as its score method.
        y = scoring_targets(y, y_pred.shape[0], spec.n_context, spec.n_frequencies, spec.n_sources)
    elif y.ndim == 2 and y_pred.ndim == 2 and y.shape[1] > y_pred.shape[1]:
        # Targets stacked with context like the input: score the target frames.
        y = target_frames(y, n_sources, y_pred.shape[1] // n_sources)
    return magnitude_sdr(y, y_pred, n_sources=n_sources, source=source)


def target_frames(Y, n_sources, n_frequencies):
    """The last ``n_frequencies`` columns of each of the ``n_sources`` blocks of Y.

    Source magnitudes stacked with left context, like the input of
    :class:`~sklearn_unfold.DeepNMF`, hold ``n_sources`` blocks of
    ``n_context * n_frequencies`` columns whose last frame is the target. Y that
    already holds target frames only is returned as is.

    Parameters
    ----------
    Y : array-like of shape (n_frames, n_sources * n_context * n_frequencies)
        Numeric 2-D array; ``n_context >= 1``.
    n_sources : int
        Number of column blocks, at least 1.
    n_frequencies : int
        Frequencies per frame, at least 1.

    Returns
    -------
    Y_target : ndarray of shape (n_frames, n_sources * n_frequencies)
        ``Y`` itself (not a copy) when it is an ndarray that already has
        ``n_sources * n_frequencies`` columns.

    Raises
    ------
    ValueError
        If ``Y`` is not a numeric 2-D array (e.g. ragged rows, strings, sparse),
        ``n_sources`` or ``n_frequencies`` is not an integer >= 1, or the
        width of ``Y`` is not ``n_sources * n_context * n_frequencies`` for a
        whole ``n_context >= 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.metrics import target_frames
    >>> Y = np.arange(8).reshape(1, 8)  # 2 sources, 2 frames of 2 frequencies
    >>> target_frames(Y, 2, 2)
    array([[2, 3, 6, 7]])
    """
    for name, value in (("n_sources", n_sources), ("n_frequencies", n_frequencies)):
        # bool is an Integral too, but True is no count.
        if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    if hasattr(Y, "toarray") or hasattr(Y, "tocsr"):
        raise ValueError("Y must be a dense 2-D array; got a sparse matrix.")
    try:
        Y = np.asarray(Y)
    except (ValueError, TypeError) as exc:
        # NumPy refuses ragged nested sequences.
        raise ValueError(f"Y must be a 2-D array of numbers; {exc}") from exc
    if not (np.issubdtype(Y.dtype, np.number) or Y.dtype == np.bool_):
        raise ValueError(
            f"Y must be a 2-D array of numbers; got dtype {Y.dtype} (ragged rows or "
            "non-numeric values)."
        )
    if Y.ndim != 2:
        raise ValueError(
            f"Y must be a 2-D array (n_frames, n_columns); got shape {Y.shape}."
        )
    n_columns = Y.shape[1]
    expected = (
        f"expected n_sources * n_context * n_frequencies = {n_sources} * n_context * "
        f"{n_frequencies} for a whole n_context >= 1"
    )
    if n_columns % n_sources:
        raise ValueError(
            f"Y has {n_columns} columns, not a multiple of n_sources={n_sources}; {expected}."
        )
    block = n_columns // n_sources
    if block == 0 or block % n_frequencies:
        raise ValueError(
            f"Y's blocks of {block} columns do not hold whole frames of {n_frequencies} "
            f"frequencies; {expected} (a multiple of {n_sources * n_frequencies})."
        )
    if block == n_frequencies:
        return Y
    return np.hstack(
        [Y[:, (l + 1) * block - n_frequencies : (l + 1) * block] for l in range(n_sources)]
    )


def sdr_scorer(estimator, X, y):
    """Score a fitted separator by the magnitude SDR of its first source (speech).

    Greater is better; pass it as ``scoring=sdr_scorer`` to
    :class:`~sklearn.model_selection.GridSearchCV` or
    :func:`~sklearn.model_selection.cross_val_score`.

    Parameters
    ----------
    estimator : estimator object
        Fitted estimator whose ``predict(X)`` returns source magnitudes of shape
        ``(n_frames, n_sources * n_freqs)``, source 0 in the first block. The number of
        blocks is its ``n_sources_`` attribute (for a
        :class:`~sklearn.pipeline.Pipeline`, that of its final step), 1 if it has none.
    X : array-like of shape (n_frames, n_features)
        Input passed to ``estimator.predict``.
    y : array-like of shape (n_frames, n_sources * n_freqs)
        True source magnitudes.

    Returns
    -------
    score : float
        ``magnitude_sdr(y, estimator.predict(X), n_sources=n_sources_, source=0)``.

    See Also
    --------
    make_sdr_scorer : The same scorer for another source.
    magnitude_sdr : The metric.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from sklearn_unfold.metrics import sdr_scorer
    >>> X = np.arange(12.0).reshape(6, 2)
    >>> y = 2.0 * X
    >>> sdr_scorer(LinearRegression().fit(X, y), X, y) > 100
    True
    """
    return _score_magnitude_sdr(estimator, X, y, source=0)


class _MagnitudeSDRScorer:
    """Picklable scorer built by :func:`make_sdr_scorer`."""

    def __init__(self, source):
        self.source = source

    def __call__(self, estimator, X, y):
        return _score_magnitude_sdr(estimator, X, y, source=self.source)

    def __repr__(self):
        return f"make_sdr_scorer(source={self.source})"


@validate_params(
    {"source": [Interval(Integral, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def make_sdr_scorer(*, source=0):
    """Make a magnitude-SDR scorer for one source, for ``scoring=`` in model selection.

    Parameters
    ----------
    source : int, default=0
        Block of the predicted and true magnitudes to score (0 is speech, 1 the noise
        for a two-source separator). It must be smaller than the estimator's
        ``n_sources_`` when scoring.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)`` returning
        ``magnitude_sdr(y, estimator.predict(X), n_sources=n_sources_, source=source)``,
        greater is better; ``n_sources_`` is read as in :func:`sdr_scorer`.

    See Also
    --------
    sdr_scorer : The scorer for source 0.

    Examples
    --------
    >>> from sklearn_unfold.metrics import make_sdr_scorer
    >>> make_sdr_scorer(source=1)
    make_sdr_scorer(source=1)
    """
    return _MagnitudeSDRScorer(source)


# --------------------------------------------------------------------------------------
# Scorers of waveform estimators
# --------------------------------------------------------------------------------------


def _waveform_sdr(reference, estimate, sample_rate):
    return sdr(reference, estimate)


def _waveform_si_sdr(reference, estimate, sample_rate):
    return si_sdr(reference, estimate)


def _waveform_pesq(reference, estimate, sample_rate):
    return pesq(reference, estimate, sample_rate=sample_rate)


def _waveform_stoi(reference, estimate, sample_rate):
    return stoi(reference, estimate, sample_rate=sample_rate)


def _waveform_estoi(reference, estimate, sample_rate):
    return stoi(reference, estimate, sample_rate=sample_rate, extended=True)


# metric name -> (function of (reference, estimate, sample_rate), optional package or None)
_WAVEFORM_METRICS = {
    "sdr": (_waveform_sdr, None),
    "si_sdr": (_waveform_si_sdr, None),
    "pesq": (_waveform_pesq, ("pesq", "PESQ")),
    "stoi": (_waveform_stoi, ("pystoi", "STOI")),
    "estoi": (_waveform_estoi, ("pystoi", "ESTOI")),
}


def _waveform_list(waveforms, name):
    """Utterances as a list: the rows of a 2-D array, or the items of a sequence."""
    if not isinstance(waveforms, (list, tuple)):
        try:
            waveforms = np.asarray(waveforms)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"{name} must be a list of 1-D waveforms or a 2-D array with one waveform "
                f"per row; {exc}"
            ) from exc
        if not (waveforms.ndim == 2 or (waveforms.ndim == 1 and waveforms.dtype == object)):
            raise ValueError(
                f"{name} must be a list of 1-D waveforms or a 2-D array with one waveform "
                f"per row; got an array of shape {waveforms.shape}."
            )
    waveforms = list(waveforms)
    if not waveforms:
        raise ValueError(f"{name} holds no utterance.")
    return waveforms


def _estimator_sample_rate(estimator):
    """The fitted ``sample_rate_``, else the ``sample_rate`` of the (final) estimator."""
    final = _final_step(estimator)
    for attribute in ("sample_rate_", "sample_rate"):
        rate = getattr(final, attribute, None)
        if rate is not None:
            return rate
    return None


class _WaveformScorer:
    """Picklable scorer built by :func:`make_waveform_scorer`."""

    def __init__(self, metric, sample_rate):
        self.metric = metric
        self.sample_rate = sample_rate

    def __call__(self, estimator, X, y):
        function, package = _WAVEFORM_METRICS[self.metric]
        if package is not None:
            # A missing package is reported before the (possibly slow) prediction.
            _import_speech_package(*package)
        if y is None:
            raise ValueError(
                "The waveform scorer needs y, the clean speech waveforms (a list of 1-D "
                "arrays or a 2-D array, one per row); got y=None."
            )
        sample_rate = None
        if self.metric in ("pesq", "stoi", "estoi"):
            sample_rate = _estimator_sample_rate(estimator)
            if sample_rate is None:
                sample_rate = self.sample_rate
            if sample_rate is None:
                raise ValueError(
                    f"The {self.metric} scorer needs the sample rate: the estimator has no "
                    "sample_rate attribute (or it is None); pass it to the factory, "
                    f"make_waveform_scorer({self.metric!r}, sample_rate=...)."
                )
        references = _waveform_list(y, "y")
        estimates = _waveform_list(estimator.predict(X), "predict(X)")
        if len(estimates) != len(references):
            raise ValueError(
                f"predict(X) returned {len(estimates)} waveforms for {len(references)} "
                "utterances in y."
            )
        scores = [
            function(reference, estimate, sample_rate)
            for reference, estimate in zip(references, estimates, strict=True)
        ]
        return float(np.mean(scores))

    def __repr__(self):
        rate = "" if self.sample_rate is None else f", sample_rate={self.sample_rate!r}"
        return f"make_waveform_scorer({self.metric!r}{rate})"


@validate_params(
    {
        "metric": [StrOptions(set(_WAVEFORM_METRICS))],
        "sample_rate": [Interval(Real, 0, None, closed="neither"), None],
    },
    prefer_skip_nested_validation=True,
)
def make_waveform_scorer(metric="sdr", *, sample_rate=None):
    """Make a scorer of waveform estimators, for ``scoring=`` in model selection.

    The scorer calls ``estimator.predict(X)``, which must return the speech estimates
    as waveforms (a list of 1-D arrays, or a 2-D array with one per row, like
    :class:`~sklearn_unfold.SpeechEnhancer`), and averages the metric over the
    utterances of ``y``. Greater is better for every metric.

    Parameters
    ----------
    metric : {"sdr", "si_sdr", "pesq", "stoi", "estoi"}, default="sdr"
        :func:`sdr`, :func:`si_sdr`, :func:`pesq` (mode picked from the rate),
        :func:`stoi` or :func:`stoi` with ``extended=True``. The last three need the
        optional extra ``speech``.
    sample_rate : int or None, default=None
        Sample rate in Hz of the waveforms, used by ``"pesq"``, ``"stoi"`` and
        ``"estoi"`` when the estimator does not tell: the estimator's fitted
        ``sample_rate_`` or its ``sample_rate`` attribute (for a
        :class:`~sklearn.pipeline.Pipeline`, its final step's) is used when it is not
        None.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)``: the mean over utterances ``i`` of
        ``metric(y[i], estimator.predict(X)[i])``, a float. It raises a ValueError
        when ``y`` is None, the numbers of utterances differ, a pair is invalid for the
        metric, or no sample rate is known to a metric that needs one, and an
        ImportError naming the extra when the metric's package is missing.

    See Also
    --------
    pesq_scorer, stoi_scorer : Ready-made scorers.
    sdr_scorer : Scorer of estimators that predict magnitude spectra.

    Examples
    --------
    >>> from sklearn_unfold.metrics import make_waveform_scorer
    >>> make_waveform_scorer("estoi", sample_rate=16000)
    make_waveform_scorer('estoi', sample_rate=16000)
    """
    return _WaveformScorer(metric, sample_rate)


pesq_scorer = make_waveform_scorer("pesq")
pesq_scorer.__doc__ = """Mean :func:`pesq` of a waveform estimator's predictions.

``pesq_scorer(estimator, X, y)`` is ``make_waveform_scorer("pesq")``: the sample rate
is read from the estimator (``sample_rate_`` or ``sample_rate``); use
``make_waveform_scorer("pesq", sample_rate=...)`` for estimators that have none.
"""

stoi_scorer = make_waveform_scorer("stoi")
stoi_scorer.__doc__ = """Mean :func:`stoi` of a waveform estimator's predictions.

``stoi_scorer(estimator, X, y)`` is ``make_waveform_scorer("stoi")``: the sample rate
is read from the estimator (``sample_rate_`` or ``sample_rate``); use
``make_waveform_scorer("stoi", sample_rate=...)`` for estimators that have none.
"""
