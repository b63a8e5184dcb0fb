"""The benchmark protocol's training set: the kept rows of the full features, in bounded memory.

The audio is synthetic (the loaders are monkeypatched): no test here reads the
data cache or reaches the network.
"""

import tracemalloc

import numpy as np
import pytest
from sklearn.utils import check_random_state

import sklearn_unfold.datasets as datasets
from sklearn_unfold import _protocol
from sklearn_unfold.audio import n_stft_frames
from sklearn_unfold.datasets import DEFAULT_SNRS, make_mixtures, make_separation_features


def _tone(rng, n_samples):
    t = np.arange(n_samples) / 8000
    f0 = rng.uniform(100, 250)
    speech = sum(rng.uniform(0.1, 1) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6))
    return speech * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 1e-3 * rng.normal(size=n_samples)


@pytest.fixture
def synthetic_audio(monkeypatch, tmp_path):
    """Synthetic utterances (1-1.6 s, unequal lengths) and noise tracks behind the real loaders.

    Returns the bytes of audio the loaders hand out per call (what the
    training-set builder must hold anyway).
    """
    monkeypatch.setenv("SKLEARN_UNFOLD_DATA", str(tmp_path / "no-data"))

    def refuse(*args, **kwargs):
        raise AssertionError("a test reached for the real audio data")

    rng = np.random.default_rng(0)
    utterances = [(f"synthetic/{u:02d}.wav", _tone(rng, int(rng.integers(8000, 12800)))) for u in range(10)]
    tracks = [(f"music{k}.wav", rng.normal(scale=0.3, size=n)) for k, n in enumerate((40000, 9000))]

    def load_utterances(subset="train", *, data_home=None, min_duration=1.0):
        assert subset == "train"
        return [(relpath, speech.copy()) for relpath, speech in utterances]

    def load_noise(subset="train", *, data_home=None):
        assert subset == "train"
        return [(name, track.copy()) for name, track in tracks]

    monkeypatch.setattr(datasets, "fetch_asterisk_audio", refuse)
    monkeypatch.setattr(datasets, "load_utterances", load_utterances)
    monkeypatch.setattr(datasets, "load_noise", load_noise)
    return sum(a.nbytes for _, a in utterances + tracks)


def _reference(n_utterances, n_frames, n_context, random_state):
    """The definition (and the implementation before the streaming one): all the
    mixtures' features, then each frame kept by one uniform draw in frame order."""
    mixtures = make_mixtures("train", n_utterances=n_utterances, random_state=random_state)
    X, Y, _ = make_separation_features(mixtures, n_context=n_context)
    p = 1.0 if n_frames is None else min(1.0, n_frames / X.shape[0])
    keep = check_random_state(random_state).uniform(size=X.shape[0]) < p
    _, ids = np.unique([m.utterance for m in mixtures], return_inverse=True)
    frame_mixture = np.repeat(np.arange(len(mixtures)), [n_stft_frames(m.mixture.shape[0]) for m in mixtures])
    return X[keep], Y[keep], ids[frame_mixture[keep]]


@pytest.mark.parametrize(
    "n_utterances, n_frames, n_context, random_state",
    [(None, None, 9, 0), (3, None, 4, 1), (None, 300, 9, 0), (6, 50, 3, 7), (2, 1, 9, 2), (4, 10**9, 1, 0)],
)
def test_training_set_is_the_kept_rows_of_the_full_features(
    synthetic_audio, n_utterances, n_frames, n_context, random_state
):
    X, Y, groups = _protocol.make_training_set(
        n_utterances=n_utterances, n_frames=n_frames, n_context=n_context, random_state=random_state
    )
    X_ref, Y_ref, groups_ref = _reference(n_utterances, n_frames, n_context, random_state)
    for a, ref in ((X, X_ref), (Y, Y_ref), (groups, groups_ref)):
        assert a.dtype == ref.dtype and a.shape == ref.shape
        assert a.flags.c_contiguous
        assert a.tobytes() == ref.tobytes()  # bit-identical, not merely close
    assert X.dtype == np.float32 and X.shape[1] == n_context * 129 and Y.shape[1] == 2 * X.shape[1]


def test_training_set_with_no_row_kept(synthetic_audio, monkeypatch):
    # Every draw above the keep probability: empty arrays of the right widths.
    class High:
        def uniform(self, size):
            return np.ones(size)

    monkeypatch.setattr(_protocol, "check_random_state", lambda seed: High())
    X, Y, groups = _protocol.make_training_set(n_utterances=2, n_frames=5)
    assert X.shape == (0, 9 * 129) and Y.shape == (0, 2 * 9 * 129) and groups.shape == (0,)


def test_training_set_memory_is_bounded_by_the_kept_rows(synthetic_audio):
    # Today's protocol keeps 0.4 % of the frames; here 40 of about 7 000. The
    # traced peak may hold the result, the loaded audio, one mixture and its
    # STFTs, and small per-frame bookkeeping; not the features of every frame
    # (or of a batch of mixtures), nor every mixture's waveforms.
    n_mixtures = 10 * len(DEFAULT_SNRS)
    tracemalloc.start()
    try:
        X, Y, groups = _protocol.make_training_set(n_utterances=None, n_frames=40)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n_total = sum(n_stft_frames(m.shape[0]) for _, m in datasets.load_utterances()) * len(DEFAULT_SNRS)
    full_features = n_total * 3 * X.shape[1] * 4  # X and Y of every frame, float32
    all_waveforms = n_mixtures * 2 * 12800 * 8  # noise and mixture of every record, at most
    result = X.nbytes + Y.nbytes + groups.nbytes
    # One mixture's STFT work: a few float64 arrays of n_frames x n_fft
    # (about 1.3 MiB measured for these 1.6 s utterances).
    one_mixture = 8 * n_stft_frames(12800) * 256 * 8
    budget = result + synthetic_audio + one_mixture
    assert 0 < X.shape[0] < 100
    assert budget < full_features / 10 and budget < all_waveforms  # the bound tells them apart
    assert peak <= budget, (peak, budget)


def test_training_set_phase_sensitive_target_is_the_kept_rows(synthetic_audio):
    # The same kept rows as make_separation_features(target="phase_sensitive") on all mixtures.
    X, Y, groups = _protocol.make_training_set(n_utterances=3, n_frames=300, n_context=4, target="phase_sensitive")
    mixtures = make_mixtures("train", n_utterances=3, random_state=0)
    X_all, Y_all, _ = make_separation_features(mixtures, n_context=4, target="phase_sensitive")
    keep = check_random_state(0).uniform(size=X_all.shape[0]) < min(1.0, 300 / X_all.shape[0])
    assert X.tobytes() == X_all[keep].tobytes() and Y.tobytes() == Y_all[keep].tobytes()
    with pytest.raises(ValueError, match="target must be one of"):
        _protocol.make_training_set(n_utterances=1, target="ideal")
