"""Hits detection on synthetic data: plain DeepNMF against the physics-aware options (PAD-NMF).

The slides' first example (Chinellato & Marcuzzi, "Physics-aware deep NMF", 2024), rebuilt here:
a mechanical structure is hit at random times and answers with its modal response, buried in noise.

Physical model of a hit (the clean component, source 0). A hit at time t0 with strength a and a
random position excites three modes of the structure; the response is a sum of damped oscillations

    x(t) = a sum_m p_m exp(-(t - t0) / tau_m) sin(2 pi f_m (t - t0) + phi_m),   t >= t0,

with f = (620, 1430, 2480) Hz, decay times tau = (40, 20, 10) ms (higher modes decay faster), modal
participations p_m ~ U(0.3, 1) and phases phi_m ~ U(0, 2 pi) drawn per hit, a ~ lognormal(0, 0.4).
Hits arrive as a Poisson process (2.5 per second) with at least 150 ms between two hits.

Noise (source 1): pink Gaussian noise, a machine hum (partials at 1000, 2000 and 3000 Hz with a
slow random amplitude modulation), and *distractor* transients (3 per second): 6 ms bursts of
white noise with a 3 ms exponential decay -- impulsive, but without the structure's modal
response, so an energy detector cannot tell them from hits. The noise is scaled so that the hits'
energy is ``--snr`` dB (default -6) below it over the whole signal.

Features: magnitude STFT (8 kHz, 16 ms sqrt-Hann window, 8 ms hop, 65 frequencies), stacked with
T = 4 frames of left context (``sklearn_unfold.audio``). Every model is trained on a training
signal and evaluated on an independent test signal.

Metrics, on the test signal:
- SDR: magnitude-domain SDR (``sklearn_unfold.metrics.magnitude_sdr``) of the estimated hit
  spectrogram (``predict``'s source 0, the Wiener-like filter of the last layer) against the true
  one; "SDR direct" scores the direct reconstruction ``W_S^K H_S^K`` instead, the quantity the
  reconstruction penalty trains (``PhysicsAwareDeepNMF.reconstruct``).
- Detection: the estimated hit energy per frame is ``e[t] = sum_f S_hat[t, f]^2``; detections
  are the peaks of e (``scipy.signal.find_peaks``, at least 150 ms apart) higher than a threshold.
  The reference of a hit is the STFT frame centred nearest to its onset. A detection is a true
  positive if it is matched to a hit within +-2 frames (+-16 ms), one-to-one (a maximum
  bipartite matching); precision = TP / detections, recall = TP / hits, F1 their harmonic mean.
  The threshold of each method is the one maximizing F1 on the *training* signal (over the peak
  heights found there), then used unchanged on the test signal.

Methods: the true hit spectrogram (an oracle: the ceiling of the detection metric), the mixture's
own energy (no separation), sparse NMF separation (DeepNMF with C = 0),
plain DeepNMF, DeepNMF with context update layers (the control for the Hankel option), and
PhysicsAwareDeepNMF with each option alone and all together: a fixed discriminative
reconstruction dictionary ('snmf': the sparse NMF bases' last frame; 'dnmf': learned once by a
first DNMF pass), block-Hankel weights (groups of 4 consecutive atoms), the reconstruction penalty
(gamma = 1). All networks: K = 10 layers, C = 3 untied layers, R = 8 bases per source, sparsity
0.5, bases trained for up to 150 sparse NMF iterations and the layers for up to 100
back-propagation updates per pass (40 and 25 with ``--quick``), tol = 1e-5, random_state = 0.

    python examples/hits_detection.py [--quick] [--snr DB] [--seed N]

The full run takes a few minutes on one core; ``--quick`` (shorter signals, fewer iterations)
well under a minute.
"""

import argparse
import time
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.signal import fftconvolve, find_peaks
from sklearn.exceptions import ConvergenceWarning

from sklearn_unfold import DeepNMF
from sklearn_unfold.audio import stack_context, stft
from sklearn_unfold.metrics import magnitude_sdr
from sklearn_unfold.pad_nmf import PhysicsAwareDeepNMF

FS = 8000
STFT = dict(sample_rate=FS, window_ms=16.0, hop_ms=8.0, n_fft=128)
HOP = 64  # samples
N_CONTEXT = 4
MODES_HZ = np.array([620.0, 1430.0, 2480.0])
MODES_TAU = np.array([0.040, 0.020, 0.010])
MIN_GAP_S = 0.15
TOLERANCE = 2  # frames


# --------------------------------------------------------------------------
# Synthetic signals
# --------------------------------------------------------------------------
def poisson_times(duration, rate, min_gap, rng, margin=0.3):
    """Event times of a Poisson process of ``rate`` per second with a dead time ``min_gap``."""
    n_max = int(2 * rate * duration) + 10
    gaps = min_gap + rng.exponential(max(1.0 / rate - min_gap, 1e-3), size=n_max)
    times = margin + np.cumsum(gaps)
    return times[times < duration - margin]


def make_hits(duration, rng):
    """The hits' waveform and their onset samples."""
    n = int(duration * FS)
    onsets = np.round(poisson_times(duration, 2.5, MIN_GAP_S, rng) * FS).astype(int)
    strength = rng.lognormal(0.0, 0.4, size=onsets.size)
    participation = rng.uniform(0.3, 1.0, size=(MODES_HZ.size, onsets.size))
    phase = rng.uniform(0, 2 * np.pi, size=(MODES_HZ.size, onsets.size))
    t = np.arange(int(6 * MODES_TAU.max() * FS)) / FS
    x = np.zeros(n)
    for f, tau, p, phi in zip(MODES_HZ, MODES_TAU, participation, phase):
        # sin(w t + phi) = cos(phi) sin(w t) + sin(phi) cos(w t): two impulse trains per mode.
        decay = np.exp(-t / tau)
        for weights, kernel in ((np.cos(phi), np.sin(2 * np.pi * f * t)), (np.sin(phi), np.cos(2 * np.pi * f * t))):
            train = np.zeros(n)
            np.add.at(train, onsets, strength * p * weights)
            x += fftconvolve(train, decay * kernel)[:n]
    return x, onsets


def make_noise(duration, rng):
    """Pink noise + modulated hum + distractor transients (unscaled)."""
    n = int(duration * FS)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / FS)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    pink = np.fft.irfft(spectrum, n)
    pink /= pink.std()
    t = np.arange(n) / FS
    n_knots = int(duration * 2) + 2  # a new hum level every 0.5 s, linearly interpolated
    envelope = np.interp(t, np.linspace(0, duration, n_knots), rng.uniform(0.3, 1.0, n_knots))
    hum = envelope * sum(np.sin(2 * np.pi * k * 1000.0 * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    burst = rng.standard_normal(int(0.006 * FS)) * np.exp(-np.arange(int(0.006 * FS)) / (0.003 * FS))
    clicks = np.zeros(n)
    click_times = np.round(poisson_times(duration, 3.0, 0.05, rng) * FS).astype(int)
    np.add.at(clicks, click_times, rng.lognormal(0.0, 0.4, size=click_times.size))
    clicks = fftconvolve(clicks, burst)[:n]
    return 0.5 * pink + 0.7 * hum + 6.0 * clicks


def make_signal(duration, snr_db, rng):
    hits, onsets = make_hits(duration, rng)
    noise = make_noise(duration, rng)
    noise *= np.sqrt(np.sum(hits**2) / np.sum(noise**2)) * 10 ** (-snr_db / 20)
    return hits, noise, onsets


def onset_frames(onsets, n_samples):
    """STFT frame centred nearest to each onset (found from the STFT of one impulse)."""
    probe = np.zeros(n_samples)
    probe[n_samples // 2] = 1.0
    centre = int(np.argmax(np.abs(stft(probe, **STFT)).sum(axis=1)))
    return centre + np.round((onsets - n_samples // 2) / HOP).astype(int)


def features(hits, noise):
    """X (n, T F) context-stacked mixture magnitudes, Y (n, 2 T F) hits then noise, and target frames."""
    mix, S, N = (np.abs(stft(x, **STFT)) for x in (hits + noise, hits, noise))
    X = stack_context(mix, N_CONTEXT)
    Y = np.hstack([stack_context(S, N_CONTEXT), stack_context(N, N_CONTEXT)])
    return X, Y, np.hstack([S, N]), mix


# --------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------
def peaks(energy):
    """Peak frames and heights of the energy curve, at least MIN_GAP_S apart."""
    idx, props = find_peaks(energy, height=0.0, distance=max(1, int(round(MIN_GAP_S * FS / HOP))))
    return idx, props["peak_heights"]


def n_matched(reference, detected, tolerance=TOLERANCE):
    """Size of a maximum one-to-one matching of detections to hits within +-tolerance frames."""
    if reference.size == 0 or detected.size == 0:
        return 0
    far = np.abs(reference[:, None] - detected[None, :]) > tolerance
    rows, cols = linear_sum_assignment(far.astype(float))
    return int(np.sum(~far[rows, cols]))


def scores(reference, detected):
    tp = n_matched(reference, detected)
    precision = tp / detected.size if detected.size else 0.0
    recall = tp / reference.size if reference.size else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return precision, recall, f1


def best_threshold(energy, reference):
    """Threshold maximizing F1 on the training signal, among the peak heights there."""
    idx, heights = peaks(energy)
    candidates = np.unique(heights)
    if candidates.size > 400:
        candidates = np.quantile(heights, np.linspace(0, 1, 400))
    f1s = [scores(reference, idx[heights >= th])[2] for th in candidates]
    return candidates[int(np.argmax(f1s))]


def detection_scores(train_estimate, test_estimate, train_ref, test_ref):
    """Precision / recall / F1 on the test signal, with the threshold chosen on the training signal."""
    threshold = best_threshold((train_estimate**2).sum(axis=1), train_ref)
    idx, heights = peaks((test_estimate**2).sum(axis=1))
    return scores(test_ref, idx[heights >= threshold])


def direct_reconstruction(model, X, F):
    """``W_S^K H_S^K``: the hits' part of the last layer, without the Wiener filter."""
    if isinstance(model, PhysicsAwareDeepNMF):
        return model.reconstruct(X)[:, :F]
    R = model.n_components
    W_K = model.trained_components_[-1] if model.n_trained_layers else model.bases_[:, -F:]
    return model.transform(X)[:, :R] @ W_K[:R]


# --------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------
def methods(quick):
    common = dict(
        n_components=8,
        n_layers=10,
        n_trained_layers=3,
        n_context=N_CONTEXT,
        sparsity=0.5,
        max_iter=25 if quick else 100,
        tol=1e-5,
        bases_max_iter=40 if quick else 150,
        random_state=0,
    )
    pad = lambda **kw: PhysicsAwareDeepNMF(**common, **kw)  # noqa: E731
    return [
        ("sparse NMF (C = 0)", DeepNMF(**{**common, "n_trained_layers": 0})),
        ("DeepNMF", DeepNMF(**common)),
        ("DeepNMF, context layers", pad(context_layers=True)),
        ("PAD: fixed W^K ('snmf')", pad(reconstruction_bases="snmf")),
        ("PAD: fixed W^K ('dnmf')", pad(reconstruction_bases="dnmf")),
        ("PAD: block-Hankel (r = 4)", pad(hankel_size=4)),
        ("PAD: reconstruction loss (gamma = 1)", pad(reconstruction_penalty=1.0)),
        ("PAD: all three", pad(hankel_size=4, reconstruction_bases="dnmf", reconstruction_penalty=1.0)),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter signals, fewer iterations (CI)")
    parser.add_argument("--snr", type=float, default=-6.0, help="hits-to-noise energy ratio in dB (default -6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic signals")
    parser.add_argument("--verbose", action="store_true", help="print each model's number of updates")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    durations = (20.0, 20.0) if args.quick else (60.0, 60.0)
    data = {}
    for name, duration in zip(("train", "test"), durations):
        hits, noise, onsets = make_signal(duration, args.snr, rng)
        X, Y, target, mix = features(hits, noise)
        data[name] = dict(X=X, Y=Y, target=target, mix=mix, ref=onset_frames(onsets, hits.size))
    train, test = data["train"], data["test"]
    print(
        f"train: {train['X'].shape[0]} frames, {train['ref'].size} hits; test: {test['X'].shape[0]} frames, "
        f"{test['ref'].size} hits; {train['X'].shape[1]} features; hits-to-noise {args.snr:g} dB"
    )
    F = train["mix"].shape[1]
    truth = test["target"][:, :F]
    oracle = detection_scores(train["target"][:, :F], truth, train["ref"], test["ref"])
    mixture = detection_scores(train["mix"], test["mix"], train["ref"], test["ref"])
    rows = [
        ("true hit spectrogram (oracle)", np.nan, np.nan, np.nan, *oracle),
        ("mixture energy (no separation)", np.nan, magnitude_sdr(truth, test["mix"]), np.nan, *mixture),
    ]
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, model in methods(args.quick):
        start = time.perf_counter()
        model.fit(train["X"], train["Y"])
        seconds = time.perf_counter() - start
        train_hat, test_hat = (model.predict(data[k]["X"])[:, :F] for k in ("train", "test"))
        sdr = magnitude_sdr(truth, test_hat)
        sdr_direct = magnitude_sdr(truth, direct_reconstruction(model, test["X"], F))
        rows.append((name, seconds, sdr, sdr_direct, *detection_scores(train_hat, test_hat, train["ref"], test["ref"])))
        if args.verbose:
            print(f"{name}: {seconds:.1f} s, {getattr(model, 'n_iter_', 0)} updates")
    print(
        f"\n{'method':<38} {'fit [s]':>7} {'SDR [dB]':>9} {'SDR direct':>11} {'precision':>10} {'recall':>7} {'F1':>6}"
    )
    for name, seconds, sdr, sdr_direct, precision, recall, f1 in rows:
        cells = [
            f"{v:>{w}.{d}f}" if np.isfinite(v) else f"{'-':>{w}}"
            for v, w, d in ((seconds, 7, 1), (sdr, 9, 2), (sdr_direct, 11, 2))
        ]
        print(f"{name:<38} {' '.join(cells)} {precision:>10.3f} {recall:>7.3f} {f1:>6.3f}")
    return rows


if __name__ == "__main__":
    main()
