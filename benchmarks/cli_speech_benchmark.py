"""The command line on the speech benchmark: ``sklearn-unfold train`` then ``evaluate``.

Writes the benchmark's audio as WAV folders (the 299 training utterances and the four training
music tracks; the 240 test mixtures with their clean speech, 40 utterances x 6 SNRs, unseen
noise), trains a model on the speech and noise folders with the library's defaults (R = 100,
K = 25, C = 2, T = 9, 10 % of the frames) mixed at -6, 0 and 6 dB, and prints the ``evaluate``
table (SDR, SI-SDR, PESQ, STOI of the input and of the output, per file and mean).

    python benchmarks/cli_speech_benchmark.py [--quick] [--json PATH] [--max-iter N] [--keep DIR]

--quick: 12 training utterances, 12 test mixtures and a small model (CI). Reads the audio from
the cache of :mod:`sklearn_unfold.datasets` (fetched from Debian packages on first use).
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from sklearn_unfold import cli
from sklearn_unfold.datasets import load_noise, load_utterances, make_mixtures
from sklearn_unfold.wavfile import write_wav


def write_folders(root, quick):
    for folder in ("speech", "noise", "test/noisy", "test/clean"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    utterances = load_utterances("train")[: 12 if quick else None]
    for rel, x in utterances:
        write_wav(root / "speech" / rel.replace("/", "__"), x, 8000)
    for name, x in load_noise("train"):
        write_wav(root / "noise" / name, x, 8000)
    mixtures = make_mixtures("test", n_utterances=2 if quick else 40)
    for i, m in enumerate(mixtures):
        name = f"{i:03d}_{m.utterance.replace('/', '__')[:-4]}_{m.snr:+.0f}dB.wav"
        write_wav(root / "test" / "noisy" / name, m.mixture, 8000)
        write_wav(root / "test" / "clean" / name, m.speech, 8000)
    return len(utterances), len(mixtures)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few files and a small model")
    parser.add_argument("--json", help="write the timings and the mean row here")
    parser.add_argument("--max-iter", type=int, default=50, help="training updates (default 50)")
    parser.add_argument("--keep", help="write the folders and the model here instead of a temporary folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        n_train, n_test = write_folders(root, args.quick)
        model = root / "model.joblib"
        options = ["--n-components", "10", "--n-layers", "5", "--max-iter", "5"] if args.quick else []
        print(f"load average {os.getloadavg()}; {n_train} training utterances, {n_test} test mixtures")
        start = time.process_time()
        status = cli.main(["train", "--quiet", "--speech", str(root / "speech"), "--noise", str(root / "noise"),
                           "--snrs", "-6", "0", "6", "--max-iter", str(args.max_iter), *options, "--out", str(model)])
        train_cpu = time.process_time() - start
        if status:
            raise SystemExit(status)
        start = time.process_time()
        status = cli.main(["evaluate", "--quiet", str(model), "--noisy", str(root / "test" / "noisy"),
                           "--clean", str(root / "test" / "clean")])
        evaluate_cpu = time.process_time() - start
        if status:
            raise SystemExit(status)
        print(f"train {train_cpu:.1f} CPU s, evaluate {evaluate_cpu:.1f} CPU s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"n_train_utterances": n_train, "n_test_mixtures": n_test,
                           "train_cpu_seconds": train_cpu, "evaluate_cpu_seconds": evaluate_cpu,
                           "load_average": os.getloadavg()}, f, indent=1)
    return 0


if __name__ == "__main__":
    main()
