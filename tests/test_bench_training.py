"""benchmarks/bench_training.py: both clocks per timing, the estimator's layouts, fresh-process contenders."""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import bench_training  # noqa: E402


def test_best_time_reads_both_clocks():
    timing = bench_training.best_time(lambda: sum(range(10000)), 3)
    assert isinstance(timing, bench_training.Timing)
    assert timing.cpu >= 0 and timing.wall > 0


def test_make_problem_is_deterministic_and_laid_out_as_deep_nmf():
    first = bench_training.make_problem(3, 2, 4, 3, 5, 20)
    second = bench_training.make_problem(3, 2, 4, 3, 5, 20)
    for a, b in zip(first[:4], second[:4]):
        np.testing.assert_array_equal(a, b)
    X, y, speech, W_fixed, layers = first
    assert X.shape == (20, 15) and y.shape == (20, 30) and W_fixed.shape == (15, 8)
    # fit and predict pass bases_.T: a transposed view of C-ordered (2 R, T F) bases.
    assert W_fixed.flags.f_contiguous and W_fixed.T.flags.c_contiguous
    assert len(layers) == 2 and all(W.flags.c_contiguous for W in layers)
    np.testing.assert_array_equal(layers[0], W_fixed[-5:])


def test_contender_runs_in_a_fresh_process_with_the_pinned_threads():
    args = argparse.Namespace(repeat=1, batch_size=4096, quick=True, threads=1)
    out = bench_training.run_child("ceiling", args)
    cpu, wall = out["matmul"]
    assert cpu >= 0 and wall > 0 and out["flop"] > 0
    assert all(pool.endswith(":1") for pool in out["thread_pools"])
