"""The speech-enhancement benchmark protocol: data, evaluation, tables.

Private: a helper of the demo (:mod:`sklearn_unfold.demo`), ``benchmarks/``
and ``examples/``, not part of the public API; it may change without notice.
They share it so that every result is measured the same way:

- training data: training utterances mixed with the four training music
  tracks at the six input SNRs, of which a seeded random subset of frames is
  kept (the paper trains on 10 % of its data);
- test data: the 40 test utterances x 6 SNRs against the unseen test track
  (:func:`sklearn_unfold.datasets.make_mixtures`);
- metric: BSS-Eval SDR (:func:`sklearn_unfold.metrics.sdr`) of the
  resynthesized speech waveform against the clean speech, averaged per input
  SNR and overall, as in Table 2 of the paper.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.utils import check_random_state

from .audio import resynthesize
from .datasets import DEFAULT_SNRS, _mixture_stream, make_mixtures, make_separation_features
from .metrics import sdr

# Utterances of each subset of the protocol (sklearn_unfold.datasets: every
# WAV of the speaker's tree lasting at least 1 s, silence/ left out, split by
# CRC). Fixed by the protocol, so a request for more can be refused before any
# audio is read.
N_UTTERANCES = {"train": 299, "test": 64}


@dataclass
class TestSet:
    """Test mixtures with their features, ready for :func:`evaluate`."""

    mixtures: list
    X: np.ndarray
    stfts: list
    bounds: np.ndarray = field(repr=False)


def make_training_set(
    *,
    n_utterances=None,
    n_frames=10000,
    n_context=9,
    random_state=0,
    data_home=None,
    target="magnitude",
):
    """Training features of the protocol: (X, Y, groups) for a random subset of frames.

    All training utterances (or a seeded choice of ``n_utterances``) are mixed
    with the training noise at the six input SNRs, and each frame is kept
    with probability ``n_frames / total``. Which frames are kept is drawn
    first (one uniform draw per frame, in mixture order, from
    ``check_random_state(random_state)``); the mixtures are then made one at
    a time and only the kept rows' context stacks are computed, so memory
    stays bounded by the result (and the clean utterances), not by the
    (several GB of) features, nor the 0.9 GB of waveforms, of all mixtures.
    The rows, values and order are those of
    :func:`sklearn_unfold.datasets.make_separation_features` on all the
    mixtures with the same rows kept.

    Parameters
    ----------
    n_utterances : int or None, default=None
        Training utterances mixed at every SNR (None = all
        ``N_UTTERANCES["train"]``, 299).
    n_frames : int or None, default=10000
        Expected number of frames kept (None = all).
    n_context : int, default=9
    random_state : int, default=0
    data_home : str or path-like, default=None
    target : {"magnitude", "phase_sensitive"}, default="magnitude"
        What Y holds (:func:`sklearn_unfold.audio.source_magnitudes`).

    Returns
    -------
    X, Y, groups : see :func:`sklearn_unfold.datasets.make_separation_features`
    """
    from .audio import TARGETS, n_stft_frames, source_magnitudes, stft

    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {target!r}.")

    utterances, snrs, mixtures = _mixture_stream(
        "train", n_utterances=n_utterances, snrs=DEFAULT_SNRS, random_state=random_state, data_home=data_home
    )
    n_snrs = len(snrs)
    relpaths = [relpath for relpath, _ in utterances for _ in range(n_snrs)]
    # Mixture i has the length of its utterance, i // n_snrs.
    frames = np.repeat([n_stft_frames(speech.shape[0]) for _, speech in utterances], n_snrs)
    bounds = np.concatenate([[0], np.cumsum(frames)])
    total = int(bounds[-1])
    keep_probability = 1.0 if n_frames is None else min(1.0, n_frames / total)
    # One draw per frame in mixture order: the same stream as drawing it a
    # batch of mixtures at a time after computing every frame's features.
    keep = check_random_state(random_state).uniform(size=total) < keep_probability
    _, utterance_ids = np.unique(relpaths, return_inverse=True)
    dtype = np.dtype(np.float32)
    n_freqs = stft(np.zeros(1)).shape[1]
    width = n_context * n_freqs
    kept = np.flatnonzero(keep)
    X = np.empty((kept.shape[0], width), dtype=dtype)
    Y = np.empty((kept.shape[0], 2 * width), dtype=dtype)
    mixture_of_row = np.searchsorted(bounds, kept, side="right") - 1
    groups = utterance_ids.astype(np.intp)[mixture_of_row]
    row_bounds = np.searchsorted(kept, bounds)
    # Row t's stack is frames t - T + 1 .. t, the first frame standing in for
    # those before the start (sklearn_unfold.audio.stack_context).
    offsets = np.arange(1 - n_context, 1)
    for i, m in enumerate(mixtures):
        lo, hi = row_bounds[i], row_bounds[i + 1]
        if lo == hi:
            continue
        rows = np.maximum(kept[lo:hi, None] - bounds[i] + offsets, 0)

        def stacked(magnitudes):
            return magnitudes.astype(dtype)[rows].reshape(hi - lo, width)

        Z = stft(m.mixture)
        X[lo:hi] = stacked(np.abs(Z))
        Y[lo:hi, :width] = stacked(source_magnitudes(stft(m.speech), Z, target))
        Y[lo:hi, width:] = stacked(source_magnitudes(stft(m.noise), Z, target))
    return X, Y, groups


def make_test_set(*, n_utterances=40, n_context=9, random_state=0, data_home=None):
    """The protocol's test mixtures (40 utterances x 6 SNRs by default) with features.

    Returns
    -------
    test_set : TestSet
    """
    mixtures = make_mixtures("test", n_utterances=n_utterances, random_state=random_state, data_home=data_home)
    X, _, _, stfts = make_separation_features(mixtures, n_context=n_context, return_stft=True, targets=False)
    bounds = np.concatenate([[0], np.cumsum([Z.shape[0] for Z in stfts])])
    return TestSet(mixtures=mixtures, X=X, stfts=stfts, bounds=bounds)


def evaluate(predict_speech, test_set):
    """Waveform SDR of the speech estimate of every test mixture.

    Parameters
    ----------
    predict_speech : callable
        Maps the test features X (n_frames, n_context * F) to the estimated
        speech magnitude (n_frames, F).
    test_set : TestSet

    Returns
    -------
    sdrs : ndarray of shape (n_mixtures,)
    seconds : float
        Time spent in ``predict_speech``.
    estimates : list of ndarray
        Resynthesized speech waveforms, one per mixture.
    """
    start = time.perf_counter()
    speech_mag = np.asarray(predict_speech(test_set.X))
    seconds = time.perf_counter() - start
    sdrs, estimates = [], []
    for i, (mix, Z) in enumerate(zip(test_set.mixtures, test_set.stfts)):
        block = speech_mag[test_set.bounds[i] : test_set.bounds[i + 1]]
        estimate = resynthesize(block, Z, length=mix.speech.shape[0])
        estimates.append(estimate)
        sdrs.append(sdr(mix.speech, estimate))
    return np.array(sdrs), seconds, estimates


def input_sdrs(test_set):
    """SDR of the unprocessed mixtures (the 'no processing' row)."""
    return np.array([sdr(m.speech, m.mixture) for m in test_set.mixtures])


def per_snr(sdrs, test_set, snrs=DEFAULT_SNRS):
    """Mean SDR per input SNR, in the order of ``snrs``."""
    levels = np.array([m.snr for m in test_set.mixtures])
    return [float(np.mean(sdrs[levels == s])) for s in snrs]


def format_table(rows, snrs=DEFAULT_SNRS, extra=()):
    """A text table laid out like the paper's Table 2.

    Parameters
    ----------
    rows : list of dict
        Each with ``"name"``, ``"per_snr"`` (list of float) and optionally
        the keys named in ``extra``.
    extra : sequence of (key, header, format)
        Additional columns, e.g. ``("n_params", "P", "{:,}")``.

    Returns
    -------
    table : str
    """
    name_width = max(len("SDR [dB]"), *(len(r["name"]) for r in rows))
    header = f"{'SDR [dB]':<{name_width}} " + " ".join(f"{s:>6g}" for s in snrs) + f" {'Avg':>6}"
    header += "".join(f" {h:>10}" for _, h, _ in extra)
    lines = [f"{'':<{name_width}} Input SNR [dB]", header, "-" * len(header)]
    for r in rows:
        values = r["per_snr"]
        line = f"{r['name']:<{name_width}} " + " ".join(f"{v:6.2f}" for v in values)
        line += f" {np.mean(values):6.2f}"
        for key, _, fmt in extra:
            value = r.get(key)
            line += f" {fmt.format(value) if value is not None else '-':>10}"
        lines.append(line)
    return "\n".join(lines)
