"""DeepNMF fit time and peak memory as the number of frames grows, and with n_jobs = 1 -> 2.

Topology: F = 32 frequencies, T = 2 frames of context, R = 8 bases per source, 2 sources,
K = 5 layers of which C = 2 trained, float32, batch_size = 4096 (500 with --quick, so that the
quick range also shows memory staying flat once the data exceeds one batch); the work per frame is fixed
(3 sparse-NMF iterations per source for the bases, 3 multiplicative back-propagation updates),
so time should grow linearly with the frames. Random non-negative data (speed does not depend
on the values), written chunk by chunk to .npy files and read back memory-mapped.

Each configuration runs in a fresh Python process, which fits twice and reports

- the fit time (wall clock, first fit);
- the peak of memory allocated by Python and numpy during fit (tracemalloc), i.e. what fit
  materializes: with memory-mapped X and Y the state kept per frame goes to temporary files,
  so this must stay flat as the frames grow; with in-memory arrays (``ndarray`` rows) it grows
  with the per-frame state (sparse-NMF activations, output of the fixed layers);
  (second fit, with tracemalloc running);
- the process's peak resident set size (``VmHWM``, Linux only), which also counts the pages
  of the mapped files the OS keeps cached.

    python benchmarks/bench_scaling.py [--quick] [--json PATH] [--png PATH]

Full run: 1e3 -> 1e6 frames (a few minutes on 2 cores); --quick: 1e3 -> 1e4.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

F, T, R, K, C = 32, 2, 8, 5, 2
DTYPE = np.float32


def write_data(folder, n_frames, seed=0):
    """X (n, T F) and Y (n, 2 T F) as .npy files, written 50 000 frames at a time."""
    rng = np.random.default_rng(seed)
    X = np.lib.format.open_memmap(os.path.join(folder, "X.npy"), mode="w+", dtype=DTYPE, shape=(n_frames, T * F))
    Y = np.lib.format.open_memmap(os.path.join(folder, "Y.npy"), mode="w+", dtype=DTYPE, shape=(n_frames, 2 * T * F))
    shapes = [rng.gamma(0.5, size=(3, T * F)) for _ in range(2)]
    for start in range(0, n_frames, 50_000):
        stop = min(start + 50_000, n_frames)
        parts = [rng.gamma(0.5, size=(stop - start, 3)) @ S + 0.01 for S in shapes]
        Y[start:stop, : T * F] = parts[0]
        Y[start:stop, T * F :] = parts[1]
        X[start:stop] = parts[0] + parts[1]
    X.flush()
    Y.flush()
    del X, Y


def child(folder, n_frames, n_jobs, mode, batch_size):
    """One measurement, in its own process; prints a JSON line."""
    import tracemalloc
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from sklearn_unfold import DeepNMF

    X = np.load(os.path.join(folder, "X.npy"), mmap_mode="r")[:n_frames]
    Y = np.load(os.path.join(folder, "Y.npy"), mmap_mode="r")[:n_frames]
    if mode == "ndarray":
        X, Y = np.array(X), np.array(Y)
    model = DeepNMF(
        n_components=R, n_layers=K, n_trained_layers=C, n_context=T, sparsity=0.1, max_iter=3, tol=0,
        bases_max_iter=3, batch_size=batch_size, n_jobs=n_jobs, random_state=0,
    )
    warnings.simplefilter("ignore", ConvergenceWarning)
    start = time.perf_counter()
    model.fit(X, Y)
    seconds = time.perf_counter() - start
    tracemalloc.start()
    model.fit(X, Y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({
        "frames": n_frames, "n_jobs": n_jobs, "input": mode, "fit_s": seconds,
        "peak_mb": peak / 1e6, "max_rss_mb": peak_rss_mb(), "data_mb": (X.nbytes + Y.nbytes) / 1e6,
        "n_iter": model.n_iter_, "loss": model.loss_,
    }))


def peak_rss_mb():
    """Peak resident set size of this process (VmHWM; ru_maxrss would include the parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3
    except OSError:
        pass
    return float("nan")


def measure(folder, n_frames, n_jobs, mode, batch_size):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    args = [folder, str(n_frames), str(n_jobs), mode, str(batch_size)]
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", *args],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(rows, path, batch_size):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, n_jobs, style in [("memmap", 1, "o-"), ("memmap", 2, "s-"), ("ndarray", 1, "^--")]:
        sel = [r for r in rows if r["input"] == mode and r["n_jobs"] == n_jobs]
        if not sel:
            continue
        frames = [r["frames"] for r in sel]
        ax_t.loglog(frames, [r["fit_s"] for r in sel], style, label=f"{mode}, n_jobs={n_jobs}")
        ax_m.loglog(frames, [r["peak_mb"] for r in sel], style, label=f"{mode}, n_jobs={n_jobs}")
    sel = [r for r in rows if r["input"] == "memmap" and r["n_jobs"] == 1]
    ax_m.loglog([r["frames"] for r in sel], [r["data_mb"] for r in sel], "k:", label="size of X and Y")
    ax_t.set(xlabel="frames", ylabel="fit time (s)", title="DeepNMF fit time")
    ax_m.set(xlabel="frames", ylabel="peak allocated during fit (MB, tracemalloc)",
             title=f"memory at batch_size={batch_size}")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        folder, n_frames, n_jobs, mode, batch_size = sys.argv[2:7]
        child(folder, int(n_frames), int(n_jobs), mode, int(batch_size))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e3 -> 1e4 frames (CI)")
    parser.add_argument("--json", help="write the measurements as JSON here")
    parser.add_argument("--png", default="bench_scaling.png", help="log-log plot (default: %(default)s)")
    args = parser.parse_args()

    sizes = [1_000, 3_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    batch_size = 500 if args.quick else 4096
    in_memory_up_to = sizes[-1] if args.quick else 100_000
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_data(folder, sizes[-1])
        header = f"{'frames':>9} {'input':>8} {'n_jobs':>6} {'fit (s)':>9} {'us/frame':>9} " \
                 f"{'peak (MB)':>10} {'peak RSS (MB)':>13} {'X+Y (MB)':>9}"
        print(header)
        print("-" * len(header))
        for n_frames in sizes:
            configs = [("memmap", 1), ("memmap", 2)] + ([("ndarray", 1)] if n_frames <= in_memory_up_to else [])
            for mode, n_jobs in configs:
                r = measure(folder, n_frames, n_jobs, mode, batch_size)
                rows.append(r)
                print(f"{r['frames']:>9} {r['input']:>8} {r['n_jobs']:>6} {r['fit_s']:>9.2f} "
                      f"{1e6 * r['fit_s'] / r['frames']:>9.1f} {r['peak_mb']:>10.2f} {r['max_rss_mb']:>13.1f} "
                      f"{r['data_mb']:>9.1f}", flush=True)
    # Below one batch, memory grows with the frames of that single batch.
    mapped = [r for r in rows if r["input"] == "memmap" and r["frames"] >= 2 * batch_size]
    growth = {
        n_jobs: max(r["peak_mb"] for r in mapped if r["n_jobs"] == n_jobs)
        / min(r["peak_mb"] for r in mapped if r["n_jobs"] == n_jobs)
        for n_jobs in (1, 2)
    }
    low, high = min(r["frames"] for r in mapped), max(r["frames"] for r in mapped)
    print(f"\nmemmap input, {low} -> {high} frames: the peak allocation changes by a factor "
          f"{growth[1]:.2f} (n_jobs=1) and {growth[2]:.2f} (n_jobs=2) for {high // low}x the data.")
    same = {(r["frames"], r["input"]): r["loss"] for r in rows if r["n_jobs"] == 1}
    assert all(same[(r["frames"], r["input"])] == r["loss"] for r in rows if r["n_jobs"] == 2), \
        "n_jobs changed the result"
    print("n_jobs = 1 and 2 give bit-identical training objectives.")
    plot(rows, args.png, batch_size)
    print(f"plot: {args.png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"topology": dict(F=F, T=T, R=R, K=K, C=C, batch_size=batch_size, dtype="float32"),
                       "rows": rows, "memmap_peak_growth": growth}, f, indent=2)


if __name__ == "__main__":
    main()
