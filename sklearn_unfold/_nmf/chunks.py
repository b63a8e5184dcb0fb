"""Frames in chunks: bounded memory, optional threads, reproducible sums.

Every NMF solver processes frames ``batch_size`` at a time so that the memory
of intermediates does not grow with the data; the chunks' results are
combined in order, so they do not depend on ``n_jobs``.

Threads, memory maps and temporary files are numpy features: under
scikit-learn's ``array_api_dispatch`` chunks run one after the other (the
array library parallelizes each operation itself) and buffers are arrays
of the data's namespace on its device.
"""

import tempfile

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn import get_config
from threadpoolctl import threadpool_limits

from .._array_api import device, get_namespace, is_numpy


def frame_chunks(n_frames, batch_size):
    """Consecutive slices of at most ``batch_size`` frames (None: all frames in one)."""
    if batch_size is None:
        batch_size = max(n_frames, 1)
    return [slice(start, min(start + batch_size, n_frames)) for start in range(0, n_frames, batch_size)]


def is_memmap_backed(X):
    """True when ``X`` is a ``numpy.memmap`` or a view of one."""
    while isinstance(X, np.ndarray):
        if isinstance(X, np.memmap):
            return True
        X = X.base
    return False


def frame_buffer(n_frames, n_values, dtype, *, like=None):
    """Uninitialized per-frame storage, shape (n_values, n_frames).

    In memory it is a C-ordered (n_values, n_frames) array. When ``like``
    (the data) is memory mapped, it is the transpose of a C-ordered
    (n_frames, n_values) ``numpy.memmap`` (so the frames of a chunk are
    contiguous on disk) on an anonymous temporary file
    (deleted when the buffer is garbage collected; ``TMPDIR`` picks the
    folder), so state that grows with the number of frames stays out of
    memory like the data does. When ``like`` is an array of another
    namespace, the buffer is one of that namespace on its device.
    """
    xp = get_namespace(like)
    if not is_numpy(xp):
        return xp.empty((n_values, n_frames), dtype=dtype, device=device(like))
    shape = (n_frames, n_values)
    if like is not None and is_memmap_backed(like) and n_frames * n_values:
        with tempfile.TemporaryFile() as backing:
            buffer = np.memmap(backing, dtype=dtype, mode="w+", shape=shape)
        return buffer.T
    # In memory: C-ordered in the solvers' (values, frames) orientation, the
    # layout of every other array they combine it with element-wise.
    return np.empty((n_values, n_frames), dtype=dtype)


def imap_chunks(func, chunks, n_jobs):
    """``func(chunk)`` for every chunk, yielded in order as they come.

    With ``n_jobs != 1`` the chunks run on threads: they share the arrays
    without copies and numpy releases the GIL in the matrix products. BLAS
    is limited to one thread per worker so the workers do not oversubscribe
    the cores. joblib dispatches ``2 * n_jobs`` tasks ahead, one chunk each,
    so at most a few chunks' results are held at once, however many chunks
    there are (its automatic batching would group more and more fast chunks
    per task and buffer their results). Under ``array_api_dispatch`` the
    chunks run in the calling thread (the dispatch setting is thread-local
    and other libraries parallelize each operation themselves).
    """
    if len(chunks) <= 1 or effective_n_jobs(n_jobs) == 1 or get_config()["array_api_dispatch"]:
        for chunk in chunks:
            yield func(chunk)
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield from Parallel(
            n_jobs=n_jobs, prefer="threads", return_as="generator", batch_size=1, pre_dispatch="2*n_jobs"
        )(delayed(func)(chunk) for chunk in chunks)


def map_chunks(func, chunks, n_jobs):
    """``[func(chunk) for chunk in chunks]``, spread over threads (see :func:`imap_chunks`)."""
    return list(imap_chunks(func, chunks, n_jobs))


def fill_by_chunks(func, chunks, n_jobs, out):
    """``out[chunk] = func(chunk)`` for every chunk (rows of ``out`` are frames); returns ``out``."""
    for chunk, part in zip(chunks, imap_chunks(func, chunks, n_jobs)):
        out[chunk, ...] = part
    return out


def sum_chunk_results(one, chunks, n_jobs, shapes):
    """Sum ``one(chunk) -> (loss, grads)`` over chunks, in order, as results arrive.

    ``shapes`` gives the shape of each layer's gradient parts (None for a
    layer that is not trained, whose entry stays None); ``shapes=None`` sums
    the losses only. Accumulators are float64 (in the namespace and on the
    device of the gradient parts) and the order is fixed, so the sums do not
    depend on ``n_jobs``.

    Returns
    -------
    loss : float
    grads : list of (plus, minus) or None
    """
    loss = 0.0
    grads = None
    for chunk_loss, chunk_grads in imap_chunks(one, chunks, n_jobs):
        loss += chunk_loss
        if shapes is None:
            continue
        if grads is None:
            grads = _zero_accumulators(shapes, chunk_grads)
        for acc, part in zip(grads, chunk_grads):
            if acc is not None:
                plus, minus = acc
                plus += part[0]
                minus += part[1]
    if shapes is not None and grads is None:
        grads = _zero_accumulators(shapes, ())
    return loss, grads


def _zero_accumulators(shapes, like):
    """float64 zeros (plus, minus) per shape, in the namespace and on the device of the parts ``like``."""
    part = next((p[0] for p in like if p is not None), None)
    xp = np if part is None else get_namespace(part)
    on = {} if is_numpy(xp) else {"device": device(part)}
    return [
        None if shape is None else (xp.zeros(shape, dtype=xp.float64, **on), xp.zeros(shape, dtype=xp.float64, **on))
        for shape in shapes
    ]
