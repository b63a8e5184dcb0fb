"""SpeechEnhancer: noisy waveforms in, clean speech out, offline or live.

Everything between waveforms and the spectral separators of this library
lives here: the STFT at any sample rate (25 ms square-root Hann window, 10 ms
hop, FFT size the next power of two), context stacking, the layout of the
sources' spectra that :class:`~sklearn_unfold.DeepNMF` trains on, a seeded
subset of training frames drawn before any feature is computed (so memory
stays bounded however much audio there is), and resynthesis with the
mixture's phase. :meth:`SpeechEnhancer.stream` runs the same model on audio
that arrives in chunks of any size and gives the same samples as
:meth:`SpeechEnhancer.predict` on the whole signal.
"""

import math
import time
from collections import deque
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted

from ._compat import HasMethods, Interval, RealNotInt, StrOptions, _fit_context
from ._fitting import N_JOBS_CONSTRAINT, transactional_fit
from .audio import TARGETS, _get_operator, _windowed_irfft, _windowed_rfft, mix_at_snr, resynthesize, source_magnitudes, stft
from .deep_nmf import DeepNMF
from .metrics import sdr

__all__ = ["SpeechEnhancer", "make_noisy"]

WINDOW_MS, HOP_MS = 25.0, 10.0


# --------------------------------------------------------------------------
# Waveform input
# --------------------------------------------------------------------------
def _as_waveforms(X, name):
    """A list of 1-D float waveforms, and whether X was one 2-D array.

    Accepts a 2-D array-like (one equal-length signal per row) or a sequence
    of 1-D array-likes. float32 stays float32, anything else becomes float64.
    """
    if isinstance(X, (str, bytes)) or not (hasattr(X, "__len__") or hasattr(X, "__array__")):
        raise ValueError(f"{name} must be a 2-D array or a list of 1-D waveforms; got {type(X).__name__}.")
    if _is_rectangular(X):
        # One 2-D array: scikit-learn's own checks and messages (sparse,
        # complex, object, NaN, too few samples).
        A = check_array(X, dtype=[np.float64, np.float32], ensure_2d=False, input_name=name)
        if A.ndim != 2:
            raise ValueError(
                f"{name} must be a 2-D array (one waveform per row) or a list of 1-D waveforms; "
                f"got an array of shape {A.shape}. Reshape your data: pass [x] for one waveform x."
            )
        waves, stacked = list(A), True
    else:
        waves, stacked = [], False
        for i, x in enumerate(X):
            a = np.asarray(x)
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
                raise ValueError(
                    f"{name}[{i}] must be a 1-D real waveform; got shape {a.shape} and dtype {a.dtype}."
                )
            waves.append(a.astype(np.float32 if a.dtype == np.float32 else np.float64, copy=False))
    if not waves:
        raise ValueError(f"{name} holds no waveform.")
    for i, x in enumerate(waves):
        if x.size == 0:
            raise ValueError(f"{name}[{i}] is empty.")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}[{i}] contains NaN or infinity.")
    return waves, stacked


def _is_rectangular(X):
    """Whether X is one array (2-D: one waveform per row) rather than a sequence of waveforms."""
    if isinstance(X, np.ndarray):
        return X.dtype != object or X.ndim == 2
    if hasattr(X, "shape") or (hasattr(X, "__array__") and not hasattr(X, "__len__")):
        return True  # DataFrames and other array containers
    try:
        first = X[0]
    except (TypeError, IndexError, KeyError):
        return False
    return np.ndim(first) == 0


def _paired_waveforms(X, y):
    if y is None:
        raise ValueError(
            "SpeechEnhancer requires y to be passed, but the target y is None: y is the clean speech in "
            "each noisy waveform of X."
        )
    Xw, stacked = _as_waveforms(X, "X")
    yw, _ = _as_waveforms(y, "y")
    if len(Xw) != len(yw):
        raise ValueError(f"X holds {len(Xw)} waveforms but y holds {len(yw)}; they must be pairs.")
    for i, (x, s) in enumerate(zip(Xw, yw)):
        if x.shape != s.shape:
            raise ValueError(
                f"X[{i}] has {x.shape[0]} samples but y[{i}] has {s.shape[0]}: each noisy waveform and its "
                "clean speech must have the same length."
            )
    return Xw, yw, stacked


# --------------------------------------------------------------------------
# Spectral layout
# --------------------------------------------------------------------------
def stft_settings(sample_rate, n_fft=None):
    """Window 25 ms and hop 10 ms rounded to whole samples; FFT the next power of two.

    Returns
    -------
    settings : dict
        Keyword arguments of :func:`~sklearn_unfold.audio.stft`.
    """
    win = max(int(round(WINDOW_MS * sample_rate / 1000.0)), 2)
    hop = max(int(round(HOP_MS * sample_rate / 1000.0)), 1)
    n_fft = 1 << (win - 1).bit_length() if n_fft is None else int(n_fft)
    if n_fft < win:
        raise ValueError(f"n_fft={n_fft} is shorter than the 25 ms window ({win} samples at {sample_rate} Hz).")
    return {
        "sample_rate": float(sample_rate),
        "window_ms": win * 1000.0 / sample_rate,
        "hop_ms": hop * 1000.0 / sample_rate,
        "n_fft": n_fft,
    }


def _stack_rows(S, n_context, rows):
    """Rows ``rows`` of :func:`~sklearn_unfold.audio.stack_context` (S, n_context), without the others."""
    pad = np.concatenate([np.repeat(S[:1], n_context - 1, axis=0), S], axis=0)
    return np.hstack([pad[rows + k] for k in range(n_context)])


def _frame_counts(waves, settings):
    op = _get_operator(settings["sample_rate"], settings["window_ms"], settings["hop_ms"], settings["n_fft"])
    return [int(op.p_max(max(len(x), op.m_num - op.m_num_mid)) - op.p_min) for x in waves]


def _kept_frames(counts, max_frames, rng):
    """Seeded subset of all training frames, as sorted indices per utterance (drawn before any feature)."""
    total = sum(counts)
    if max_frames is None:
        n_keep = total
    elif isinstance(max_frames, Integral):
        n_keep = min(int(max_frames), total)
    else:
        n_keep = max(1, math.ceil(float(max_frames) * total))
    keep = np.sort(rng.choice(total, size=n_keep, replace=False)) if n_keep < total else np.arange(total)
    bounds = np.cumsum([0] + counts)
    return [keep[(keep >= lo) & (keep < hi)] - lo for lo, hi in zip(bounds[:-1], bounds[1:])]


def training_features(X, y, settings, n_context, rows_per_utterance, dtype=np.float32, target="magnitude"):
    """Separator input and target for the kept frames of every utterance.

    ``target`` is what the targets hold for speech and noise: magnitudes or
    phase-sensitive targets (:func:`sklearn_unfold.audio.source_magnitudes`).

    Returns
    -------
    features : ndarray of shape (n_kept, n_context * n_freqs)
        Context-stacked magnitudes of the noisy waveforms.
    targets : ndarray of shape (n_kept, 2 * n_context * n_freqs)
        Speech (``y``) and noise (``X - y``) magnitudes stacked the same way.
    groups : ndarray of shape (n_kept,)
        Index of the utterance of each frame.
    """
    n_kept = sum(len(rows) for rows in rows_per_utterance)
    n_freqs = settings["n_fft"] // 2 + 1
    width = n_context * n_freqs
    features = np.empty((n_kept, width), dtype=dtype)
    targets = np.empty((n_kept, 2 * width), dtype=dtype)
    groups = np.empty(n_kept, dtype=np.intp)
    start = 0
    for i, (x, s, rows) in enumerate(zip(X, y, rows_per_utterance)):
        if not len(rows):
            continue
        stop = start + len(rows)
        Z = stft(x, **settings)
        features[start:stop] = _stack_rows(np.abs(Z).astype(dtype, copy=False), n_context, rows)
        noise = np.asarray(x, dtype=np.float64) - s
        for block, source in ((slice(0, width), s), (slice(width, 2 * width), noise)):
            magnitudes = source_magnitudes(stft(source, **settings), Z, target).astype(dtype, copy=False)
            targets[start:stop, block] = _stack_rows(magnitudes, n_context, rows)
        groups[start:stop] = i
        start = stop
    return features, targets, groups


# --------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------
class SpeechEnhancer(RegressorMixin, BaseEstimator):
    """Speech enhancement on waveforms with a deep-unfolded NMF separator.

    ``fit(X, y)`` takes noisy waveforms ``X`` and the clean speech ``y`` in
    them; the noise is ``X - y``. It computes the magnitude STFT of both
    (25 ms square-root Hann window, 10 ms hop, at any ``sample_rate``),
    stacks ``n_context`` frames of left context, and fits the separator on
    a seeded subset of the frames with speech and noise as its two sources.
    ``predict(X)`` runs the separator on every frame, keeps the speech
    estimate and resynthesizes it with the mixture's phase.

    The model only looks back (left context, frame-wise network), so it also
    runs live: :meth:`stream` gives the same output chunk by chunk, with an
    algorithmic latency of one window (25 ms).

    Parameters
    ----------
    separator : DeepNMF, DiscriminativeNMF or PhysicsAwareDeepNMF, default=None
        The spectral separator, cloned in fit (None: ``DeepNMF()``, the
        paper's K = 25, C = 2, R = 100). Its ``n_context`` is set to this
        estimator's.
    sample_rate : float, default=16000
        Sampling rate of the waveforms in Hz.
    n_fft : int, default=None
        FFT size; None takes the next power of two of the window length
        (512 at 16 kHz, 256 at 8 kHz).
    n_context : int, default=9
        Frames T of left context per feature vector (target frame last).
    max_frames : int or float, default=0.1
        Training frames kept: a float in (0, 1] is a fraction of all frames
        (the paper keeps 10 %), an int a number of frames, None all. The
        frames are drawn (seeded by ``random_state``) before any feature is
        computed, so fit's memory is that of the kept frames only.
    target : {"magnitude", "phase_sensitive"}, default="magnitude"
        What the separator learns to output for speech and noise: their
        magnitudes, or the phase-sensitive target
        ``clip(|S| cos(angle S - angle X), 0, |X|)`` of Erdogan et al. 2015
        (:func:`sklearn_unfold.audio.source_magnitudes`), the part of each
        source that resynthesis with the mixture's phase can recover.
    random_state : int, RandomState instance or None, default=None
        Seeds the frame subset and the separator's initialization (unless
        the given separator has its own ``random_state``).
    verbose : int, default=0
        Progress of feature extraction and of the separator's fit.
    n_jobs : int, default=None
        Threads of the separator (joblib); results do not depend on it.

    Attributes
    ----------
    separator_ : estimator
        The fitted separator.
    stft_settings_ : dict
        The STFT's ``sample_rate``, ``window_ms``, ``hop_ms``, ``n_fft``.
    n_frequencies_ : int
        Frequency bins per frame.
    n_training_frames_ : int
        Frames the separator was fitted on.

    See Also
    --------
    make_noisy : training pairs from clean speech and noise recordings.
    DeepNMF : the default separator.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold import DeepNMF, SpeechEnhancer
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(8000) / 8000
    >>> clean = [np.sin(2 * np.pi * 440 * t) * (t % 0.25 < 0.12) for _ in range(3)]
    >>> noisy = [s + 0.3 * rng.standard_normal(s.size) for s in clean]
    >>> sep = DeepNMF(n_components=4, n_layers=4, n_trained_layers=1, max_iter=5, bases_max_iter=10)
    >>> enhancer = SpeechEnhancer(sep, sample_rate=8000, n_context=2, random_state=0).fit(noisy, clean)
    >>> [e.shape for e in enhancer.predict(noisy[:2])]
    [(8000,), (8000,)]
    """

    _parameter_constraints: dict = {
        "separator": [HasMethods(["fit", "predict"]), None],
        "sample_rate": [Interval(Real, 0, None, closed="neither")],
        "n_fft": [Interval(Integral, 2, None, closed="left"), None],
        "n_context": [Interval(Integral, 1, None, closed="left")],
        "max_frames": [Interval(Integral, 1, None, closed="left"), Interval(RealNotInt, 0, 1, closed="right"), None],
        "target": [StrOptions(set(TARGETS))],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": N_JOBS_CONSTRAINT,
    }

    def __init__(
        self,
        separator=None,
        *,
        sample_rate=16000,
        n_fft=None,
        n_context=9,
        max_frames=0.1,
        target="magnitude",
        random_state=None,
        verbose=0,
        n_jobs=None,
    ):
        self.separator = separator
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.n_context = n_context
        self.max_frames = max_frames
        self.target = target
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _log(self, message):
        if self.verbose:
            print(f"[SpeechEnhancer] {message}", flush=True)

    @_fit_context(prefer_skip_nested_validation=False)
    @transactional_fit
    def fit(self, X, y):
        """Fit the separator on the kept frames of noisy / clean waveform pairs.

        Parameters
        ----------
        X : list of array-like of shape (n_samples_i,) or array-like of shape (n_utterances, n_samples)
            Noisy waveforms.
        y : same layout as X
            The clean speech in each noisy waveform (same lengths); the
            noise is ``X - y``.

        Returns
        -------
        self : object
        """
        X, y, stacked = _paired_waveforms(X, y)
        settings = stft_settings(self.sample_rate, self.n_fft)
        rng = check_random_state(self.random_state)
        start = time.perf_counter()
        rows = _kept_frames(_frame_counts(X, settings), self.max_frames, rng)
        features, targets, _ = training_features(X, y, settings, self.n_context, rows, target=self.target)
        self._log(f"{len(features)} training frames from {len(X)} utterances ({time.perf_counter() - start:.1f} s)")
        separator = clone(DeepNMF() if self.separator is None else self.separator)
        params = {"n_context": self.n_context}
        if "n_jobs" in separator.get_params():
            params["n_jobs"] = self.n_jobs
        if separator.get_params().get("random_state", 0) is None:
            params["random_state"] = rng.randint(np.iinfo(np.int32).max)
        if self.verbose and "verbose" in separator.get_params():
            params["verbose"] = self.verbose
        separator.set_params(**params).fit(features, targets)
        self.separator_ = separator
        self.stft_settings_ = settings
        self.n_frequencies_ = settings["n_fft"] // 2 + 1
        self.n_training_frames_ = len(features)
        self._n_context_ = int(self.n_context)
        if stacked:
            self.n_features_in_ = X[0].shape[0]
        self._log(f"fitted in {time.perf_counter() - start:.1f} s")
        return self

    def _speech_magnitudes(self, mags):
        """Speech magnitude of every frame from the frames' mixture magnitudes."""
        F, T = self.n_frequencies_, self._n_context_
        rows = np.arange(mags.shape[0])
        return self.separator_.predict(_stack_rows(mags, T, rows))[:, :F]

    def _enhance_one(self, x):
        settings = self.stft_settings_
        Z = stft(x, **settings)
        speech = self._speech_magnitudes(np.abs(Z).astype(np.float32))
        out = resynthesize(speech.astype(np.float64), Z.astype(np.complex128), length=x.shape[0], **settings)
        return out.astype(x.dtype, copy=False)

    def predict(self, X):
        """Speech estimates, one per noisy waveform, with the same lengths.

        Parameters
        ----------
        X : list of array-like of shape (n_samples_i,) or array-like of shape (n_utterances, n_samples)
            Noisy waveforms at ``sample_rate``.

        Returns
        -------
        y_pred : list of ndarray, or ndarray of shape (n_utterances, n_samples) for 2-D X
            float32 for float32 input, float64 otherwise.
        """
        check_is_fitted(self)
        waves, stacked = _as_waveforms(X, "X")
        out = [self._enhance_one(x) for x in waves]
        return np.vstack(out) if stacked else out

    def score(self, X, y, sample_weight=None):
        """Mean BSS-Eval SDR (dB) of the speech estimates over the utterances.

        Parameters
        ----------
        X : list of array-like or 2-D array-like
            Noisy waveforms.
        y : same layout as X
            The clean speech.
        sample_weight : array-like of shape (n_utterances,), default=None
            Weights of the utterances in the mean.

        Returns
        -------
        sdr : float
        """
        X, y, _ = _paired_waveforms(X, y)
        estimates = self.predict(X)
        scores = [sdr(s, e) for s, e in zip(y, estimates)]
        return float(np.average(scores, weights=sample_weight))

    def stream(self):
        """A live enhancer: ``process(chunk)`` returns the samples that are final so far.

        Returns
        -------
        stream : EnhancerStream
        """
        check_is_fitted(self)
        return EnhancerStream(self)

    @property
    def latency_(self):
        """Algorithmic latency in samples: one window (output sample n needs input up to n + window)."""
        check_is_fitted(self)
        s = self.stft_settings_
        return int(round(s["window_ms"] * s["sample_rate"] / 1000.0))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.non_deterministic = False
        return tags


class EnhancerStream:
    """Stateful chunk-by-chunk enhancement with a fitted :class:`SpeechEnhancer`.

    ``process(chunk)`` takes any number of new samples and returns the
    enhanced samples that no later input can change; ``flush()`` ends the
    signal and returns the rest. The concatenated output equals
    ``enhancer.predict([signal])[0]`` (up to rounding), whatever the chunk
    sizes. Output sample ``n`` is final once input sample
    ``n + window - 1`` has arrived: the algorithmic latency is one window
    (25 ms), plus the time to compute a frame.
    """

    def __init__(self, enhancer):
        s = enhancer.stft_settings_
        self._enhancer = enhancer
        self._op = _get_operator(s["sample_rate"], s["window_ms"], s["hop_ms"], s["n_fft"])
        op = self._op
        self._input = np.zeros(0)  # samples from absolute index self._input_start on
        self._input_start = op.p_min * op.hop - op.m_num_mid  # first sample of the first frame (<= 0)
        self._n_received = 0
        self._next_frame = op.p_min
        self._context = deque(maxlen=enhancer._n_context_)
        self._output = np.zeros(0)  # overlap-add accumulator from absolute index self._output_start
        self._output_start = 0
        self._dtype = None
        self._closed = False

    def _frame_start(self, p):
        return p * self._op.hop - self._op.m_num_mid

    def _run_frames(self, last):
        """Compute frames ``self._next_frame .. last - 1`` and overlap-add them."""
        op = self._op
        frames = range(self._next_frame, last)
        if not len(frames):
            return
        starts = [self._frame_start(p) - self._input_start for p in frames]
        spectra = _windowed_rfft(op, np.stack([self._input[a : a + op.m_num] for a in starts]))
        mags = np.abs(spectra).astype(np.float32)
        if not self._context:
            # Frames before the first repeat the first one, as stack_context does.
            self._context.extend([mags[0]] * (self._context.maxlen - 1))
        stacked = np.empty((len(frames), self._context.maxlen * mags.shape[1]), dtype=np.float32)
        for i in range(len(frames)):
            self._context.append(mags[i])
            stacked[i] = np.concatenate(self._context)
        speech = self._enhancer.separator_.predict(stacked)[:, : self._enhancer.n_frequencies_]
        phase = np.divide(spectra, np.abs(spectra), out=np.ones_like(spectra), where=np.abs(spectra) > 0)
        pieces = _windowed_irfft(op, speech.astype(np.float64) * phase)
        end = self._frame_start(last - 1) + op.m_num
        if end > self._output_start + len(self._output):
            self._output = np.concatenate([self._output, np.zeros(end - self._output_start - len(self._output))])
        for i, p in enumerate(frames):
            a = self._frame_start(p)
            lo = max(a, 0)  # samples before the signal's start are not output
            if lo < a + op.m_num:
                self._output[lo - self._output_start : a + op.m_num - self._output_start] += pieces[i, lo - a :]
        self._next_frame = last
        # Input samples no later frame needs.
        drop = self._frame_start(last) - self._input_start
        if drop > 0:
            self._input = self._input[drop:]
            self._input_start += drop

    def _emit(self, upto):
        n = max(upto - self._output_start, 0)
        out, self._output = self._output[:n], self._output[n:]
        self._output_start += n
        return out.astype(self._dtype, copy=False)

    def process(self, chunk):
        """Feed new samples; return the enhanced samples that are final so far.

        Parameters
        ----------
        chunk : array-like of shape (n_new,)
            The next samples (any number, 0 included).

        Returns
        -------
        out : ndarray of shape (n_final,)
        """
        if self._closed:
            raise RuntimeError("this stream was flushed; start a new one with enhancer.stream().")
        chunk = np.asarray(chunk)
        if chunk.ndim != 1 or not np.issubdtype(chunk.dtype, np.number):
            raise ValueError(f"chunk must be a 1-D array of samples; got shape {chunk.shape}, dtype {chunk.dtype}.")
        if not np.all(np.isfinite(chunk)):
            raise ValueError("chunk contains NaN or infinity.")
        if self._dtype is None:
            self._dtype = np.float32 if chunk.dtype == np.float32 else np.float64
            # The zeros before the signal that the first frames hang over.
            self._input = np.zeros(-self._input_start)
        self._input = np.concatenate([self._input, chunk.astype(np.float64)])
        self._n_received += chunk.shape[0]
        op = self._op
        # Frame p is complete once its last sample has arrived.
        last = (self._n_received + op.m_num_mid - op.m_num) // op.hop + 1
        self._run_frames(max(last, self._next_frame))
        # Samples before the next frame's start get nothing more.
        return self._emit(min(self._frame_start(self._next_frame), self._n_received))

    def flush(self):
        """End of the signal: compute the frames that hang over its end; return the rest."""
        if self._closed:
            raise RuntimeError("this stream was already flushed.")
        if self._dtype is None:
            raise ValueError("the stream received no samples.")
        op = self._op
        n = self._n_received
        padded = max(n, op.m_num - op.m_num_mid)
        last = op.p_max(padded)
        end = self._frame_start(last - 1) + op.m_num
        have = self._input_start + len(self._input)
        if end > have:
            self._input = np.concatenate([self._input, np.zeros(end - have)])
        self._run_frames(last)
        self._closed = True
        return self._emit(n)


# --------------------------------------------------------------------------
# Training pairs
# --------------------------------------------------------------------------
def make_noisy(speech, noise, snrs, *, random_state=None):
    """Noisy / clean training pairs from clean speech and noise recordings.

    Every speech utterance is mixed at every SNR with an excerpt of a noise
    recording (recording and start drawn at random; a recording shorter than
    the utterance is repeated).

    Parameters
    ----------
    speech : list of array-like of shape (n_samples_i,)
        Clean speech waveforms.
    noise : list of array-like of shape (n_samples_j,)
        Noise recordings (any lengths).
    snrs : float or sequence of float
        Speech-to-noise ratios in dB.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : list of ndarray
        Noisy waveforms, utterance-major (all SNRs of utterance 0 first).
    y : list of ndarray
        The clean speech of each, the same arrays as ``speech``.
    groups : ndarray of shape (len(X),)
        Index of the speech utterance of each pair, for ``GroupKFold``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.enhance import make_noisy
    >>> rng = np.random.default_rng(0)
    >>> X, y, groups = make_noisy([rng.standard_normal(800)], [rng.standard_normal(3000)], [0, 5], random_state=0)
    >>> len(X), groups.tolist()
    (2, [0, 0])
    """
    speech, _ = _as_waveforms(speech, "speech")
    noise, _ = _as_waveforms(noise, "noise")
    snrs = np.atleast_1d(np.asarray(snrs, dtype=np.float64))
    if snrs.ndim != 1 or not snrs.size or not np.all(np.isfinite(snrs)):
        raise ValueError(f"snrs must be one or more finite values in dB; got {snrs!r}.")
    rng = check_random_state(random_state)
    X, y, groups = [], [], []
    for i, s in enumerate(speech):
        for snr in snrs:
            track = noise[rng.randint(len(noise))]
            if track.shape[0] < s.shape[0]:
                track = np.tile(track, -(-s.shape[0] // track.shape[0]))
            offset = rng.randint(track.shape[0] - s.shape[0] + 1)
            mixture, _ = mix_at_snr(s, track[offset : offset + s.shape[0]], float(snr))
            X.append(mixture.astype(s.dtype, copy=False))
            y.append(s)
            groups.append(i)
    return X, y, np.asarray(groups)
