"""Real-time factor of SpeechEnhancer.stream(): processing time / audio time, one thread.

The paper's topology (DeepNMF K = 25, C = 2, R = 100 per source, T = 9 frames of context) at
8 kHz (F = 129) and 16 kHz (F = 257), and the same without context (T = 1) at 16 kHz, fed one
hop (10 ms) at a time and 100 ms at a time. At T = 9 and 16 kHz a frame costs about 44 MFLOP
(24 fixed iterations of two products with 2313 x 200 bases), 4.4 GFLOP per second of audio:
the matrix products alone bound the real-time factor from below at about 0.1 on one core
of a machine doing 40 GFLOP/s.
The separator is fitted briefly on synthetic noisy tones (a few seconds; the time per frame of
inference does not depend on the trained values, only on the shapes), then 10 s of audio
(2 s with --quick) are streamed; BLAS and OpenMP are pinned to one thread. Reported: CPU time
and wall time per second of audio (the real-time factor; < 1 keeps up with live audio), the
machine's load average, and whether the stream's output equals predict on the whole signal.

    python benchmarks/bench_streaming.py [--quick] [--json PATH]

The JSON holds one record per (sample rate, chunk) with keys ``sample_rate``, ``chunk_ms``,
``n_context``, ``real_time_factor`` (CPU time), ``real_time_factor_wall``, ``audio_seconds``.
"""

import argparse
import json
import os
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from sklearn_unfold import DeepNMF, SpeechEnhancer


def fitted_enhancer(sample_rate, quick, n_context=9):
    rng = np.random.default_rng(0)
    t = np.arange(sample_rate) / sample_rate
    clean = [np.sin(2 * np.pi * (200 + 50 * k) * t) * (np.sin(2 * np.pi * 3 * t) > 0) for k in range(3)]
    noisy = [s + 0.3 * rng.standard_normal(s.size) for s in clean]
    separator = DeepNMF(n_components=100, n_layers=25, n_trained_layers=2, max_iter=1 if quick else 3,
                        bases_max_iter=3 if quick else 10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SpeechEnhancer(separator, sample_rate=sample_rate, n_context=n_context, max_frames=None,
                              random_state=0).fit(noisy, clean)


def stream_time(enhancer, x, chunk):
    stream = enhancer.stream()
    parts = []
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(x), chunk):
        parts.append(stream.process(x[start : start + chunk]))
    parts.append(stream.flush())
    return time.process_time() - cpu, time.perf_counter() - wall, np.concatenate(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s of audio and a shorter fit")
    parser.add_argument("--json", help="write the records to this file")
    args = parser.parse_args(argv)
    seconds = 2 if args.quick else 10
    records = []
    with threadpool_limits(limits=1):
        # The paper's T = 9 at both rates, and T = 1 at 16 kHz: the fixed layers' cost is
        # proportional to T (their bases have T F rows), the rest is not.
        for sample_rate, n_context in ((8000, 9), (16000, 9), (16000, 1)):
            enhancer = fitted_enhancer(sample_rate, args.quick, n_context)
            x = np.random.default_rng(1).standard_normal(seconds * sample_rate) * 0.3
            reference = enhancer.predict([x])[0]
            for chunk_ms in (10, 100):
                chunk = sample_rate * chunk_ms // 1000
                cpu, wall, out = stream_time(enhancer, x, chunk)
                error = float(np.max(np.abs(out - reference)) / np.max(np.abs(reference)))
                records.append({
                    "sample_rate": sample_rate, "chunk_ms": chunk_ms, "n_context": n_context,
                    "audio_seconds": seconds,
                    "real_time_factor": cpu / seconds, "real_time_factor_wall": wall / seconds,
                    "max_relative_difference_to_predict": error,
                })
    load = os.getloadavg()
    print(f"SpeechEnhancer.stream(), DeepNMF K=25 C=2 R=100, one thread; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'rate':>6} {'T':>2} {'chunk':>7} {'RTF (CPU)':>10} {'RTF (wall)':>11} {'max |stream - predict|':>24}")
    for r in records:
        print(f"{r['sample_rate']:>6} {r['n_context']:>2} {r['chunk_ms']:>5}ms {r['real_time_factor']:>10.3f} "
              f"{r['real_time_factor_wall']:>11.3f} {r['max_relative_difference_to_predict']:>24.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average": load, "records": records}, f, indent=2)


if __name__ == "__main__":
    main()
