"""More training frames for the models ``speech_enhancement.py`` chose: 10 % of all training frames.

``benchmarks/speech_enhancement.py`` chooses DeepNMF's and the DNN's hyper-parameters by
``GroupKFold`` cross-validation on 10 000 training frames (1.4 % of the protocol's training
frames) and scores them on the 240 test mixtures. This script refits those two chosen models, with
the same hyper-parameters (given on the command line; the defaults are the ones the full run of
``speech_enhancement.py`` chose), on a larger seeded subset of the training frames — by default
10 %, the share the paper trains on — and scores them on the same test set, once. DeepNMF learns
new bases on the larger set; both models stop by early stopping on held-out training utterances.

All training frames (100 %) are about 700 000 frames, 9.7 GB of float32 features: at the costs
measured here (sparse-NMF bases ~85 s and a 2x1024 DNN epoch ~2.6 s per 10 000 frames, both
linear in the frames) that is hours on two cores, which this script does not attempt by default
(``--fraction 1`` would).

    python benchmarks/speech_training_frames.py [--quick] [--fraction F | --frames N] [--json PATH]
        [--sparsity MU --n-components R --n-layers K --n-trained-layers C] [--dnn-hidden 1024x1024 --dnn-lr 1e-3]
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import speech_enhancement as se  # noqa: E402  (the benchmark next to this script)

from sklearn_unfold import DeepNMF  # noqa: E402
from sklearn_unfold._protocol import make_test_set, make_training_set  # noqa: E402
from sklearn_unfold.audio import n_stft_frames  # noqa: E402
from sklearn_unfold.datasets import DEFAULT_SNRS, _mixture_stream  # noqa: E402


def total_training_frames(n_utterances=None):
    """Frames of all the protocol's training mixtures (every utterance at every SNR)."""
    utterances, snrs, _ = _mixture_stream(
        "train", n_utterances=n_utterances, snrs=DEFAULT_SNRS, random_state=0, data_home=None
    )
    return len(snrs) * sum(n_stft_frames(speech.shape[0]) for _, speech in utterances)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few utterances and small models (under a minute)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--fraction", type=float, default=0.1, help="share of all training frames (default 0.1)")
    size.add_argument("--frames", type=int, help="number of training frames (instead of --fraction)")
    parser.add_argument("--sparsity", type=float, default=3.0)
    parser.add_argument("--n-components", type=int, default=100)
    parser.add_argument("--n-layers", type=int, default=25)
    parser.add_argument("--n-trained-layers", type=int, default=3)
    parser.add_argument("--dnn-hidden", type=se.parse_hidden, default=(1024, 1024))
    parser.add_argument("--dnn-lr", type=float, default=1e-3)
    parser.add_argument("--models", nargs="+", choices=("deep", "dnn"), default=["deep", "dnn"],
                        help="which rows to fit (default both)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must be in (0, 1]; got {args.fraction}")
    cfg = dict(se.CONFIGS["quick" if args.quick else "full"], threads=args.threads)
    deep_params = dict(sparsity=args.sparsity, n_components=args.n_components, n_layers=args.n_layers,
                       n_trained_layers=args.n_trained_layers)
    if args.quick:
        deep_params.update(n_components=10, n_layers=4, n_trained_layers=2)
        args.dnn_hidden = (32,)
    with threadpool_limits(args.threads):
        rows = run(cfg, args, deep_params)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "name"} for r in rows], f, indent=1)
    return rows


def run(cfg, args, deep_params):
    warnings.simplefilter("ignore", ConvergenceWarning)
    start = time.perf_counter()
    total = total_training_frames(cfg["train_utts"])
    n_frames = args.frames if args.frames is not None else int(round(args.fraction * total))
    X, Y, groups = make_training_set(n_utterances=cfg["train_utts"], n_frames=n_frames)
    test = make_test_set(n_utterances=cfg["test_utts"])
    print(f"data: {X.shape[0]:,} training frames ({X.shape[0] / total:.1%} of {total:,}), "
          f"{len(test.mixtures)} test mixtures ({time.perf_counter() - start:.1f} s)", flush=True)
    bench = se.Benchmark(test, se.speech_metrics_missing())
    share = f"{X.shape[0]:,} frames"
    with config_context(enable_metadata_routing=True):
        if "deep" in args.models:
            deep = DeepNMF(**deep_params, max_iter=cfg["max_iter"], early_stopping=True,
                           n_iter_no_change=cfg["n_iter_no_change"], bases_max_iter=cfg["bases_iter"], random_state=0)
            deep, seconds = se.fit_timed(deep.set_fit_request(groups=True), X, Y, groups)
            print(f"  DeepNMF: {deep.n_iter_} updates (early stopping), fit {seconds:.0f} s", flush=True)
            bench.score_deep_nmf(f"DeepNMF {se._describe(deep)}, {share}", deep, seconds)
        no_torch = se._mask_dnn.torch_missing()
        if "dnn" not in args.models:
            pass
        elif no_torch:
            print(f"DNN row skipped: {no_torch}", flush=True)
        else:
            dnn = se._mask_dnn.MaskDNN(
                hidden_layer_sizes=args.dnn_hidden, learning_rate=args.dnn_lr, max_epochs=cfg["dnn_epochs"],
                n_iter_no_change=cfg["dnn_patience"], n_threads=cfg["threads"], random_state=0,
            ).set_fit_request(groups=True)
            dnn, seconds = se.fit_timed(dnn, X, Y, groups)
            print(f"  DNN: best epoch {dnn.best_epoch_} of {dnn.n_iter_}, fit {seconds:.0f} s", flush=True)
            bench.score_dnn(f"DNN {se._short(dnn.hidden_layer_sizes)} (lr {args.dnn_lr:g}), {share}", dnn, seconds)
    print()
    rows = se.print_table(bench)
    print(f"total {time.perf_counter() - start:.0f} s ({args.threads} thread(s))")
    return rows


if __name__ == "__main__":
    main()
