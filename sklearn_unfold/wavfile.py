"""Reading and writing WAV files as waveforms in [-1, 1], at any sample rate.

:func:`read_wav` reads any PCM (8, 16, 24, 32 or 64-bit integer) or IEEE
float (32 or 64-bit) WAV file that :mod:`scipy.io.wavfile` understands,
averages the channels of a multi-channel file to mono and, when asked,
resamples to a given rate with :func:`scipy.signal.resample_poly`.
:func:`write_wav` writes 16-bit PCM. :func:`read_wav_folder` reads every WAV
file under a folder.

Errors name the file: a missing file raises :class:`FileNotFoundError`, a file
that is not a complete, readable WAV file raises :class:`ValueError`.

Examples
--------
>>> import numpy as np
>>> from sklearn_unfold.wavfile import read_wav, write_wav
>>> path = getfixture("tmp_path") / "tone.wav"
>>> tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
>>> write_wav(path, tone, 8000)
>>> x, rate = read_wav(path, sample_rate=16000)
>>> rate, x.shape, x.dtype
(16000, (16000,), dtype('float64'))
"""

import fnmatch
import math
import os
import struct
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from ._files import atomic_write

__all__ = ["read_wav", "read_wav_folder", "resample", "write_wav"]


def _check_rate(sample_rate, name="sample_rate"):
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, Integral) or sample_rate <= 0:
        raise ValueError(f"{name} must be a positive integer (samples per second); got {sample_rate!r}.")
    return int(sample_rate)


def resample(x, orig_rate, target_rate):
    """Resample a waveform from ``orig_rate`` to ``target_rate`` (Hz).

    Uses :func:`scipy.signal.resample_poly` with the exact rational factor
    ``up / down = target_rate / orig_rate`` reduced by their greatest common
    divisor (e.g. 44100 -> 16000 Hz is up 160, down 441), so no rate is
    approximated. The output has ``ceil(len(x) * up / down)`` samples.

    Parameters
    ----------
    x : array-like of shape (n_samples,)
        Waveform.
    orig_rate, target_rate : int
        Sample rates in Hz (positive integers).

    Returns
    -------
    y : ndarray of shape (ceil(n_samples * target_rate / orig_rate),)
        The resampled waveform (float64, or float32 for float32 input); ``x``
        itself (as an array) when the rates are equal.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.wavfile import resample
    >>> resample(np.zeros(441), 44100, 16000).shape
    (160,)
    """
    orig_rate = _check_rate(orig_rate, "orig_rate")
    target_rate = _check_rate(target_rate, "target_rate")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if orig_rate == target_rate:
        return x
    g = math.gcd(orig_rate, target_rate)
    return resample_poly(x, target_rate // g, orig_rate // g)


def read_wav(path, *, sample_rate=None):
    """Read a WAV file as a mono float64 waveform.

    Parameters
    ----------
    path : str or path-like
        The WAV file.
    sample_rate : int, default=None
        The rate to return the waveform at, in Hz: a file at another rate is
        resampled (see :func:`resample`). None keeps the file's rate.

    Returns
    -------
    x : ndarray of shape (n_samples,), float64
        The waveform. Integer PCM is scaled to [-1, 1) by its full scale
        (``-128..127`` around 128 for unsigned 8-bit, ``2**15`` for 16-bit,
        ``2**31`` for 24-bit and 32-bit, which scipy reads as left-justified
        int32, ``2**63`` for 64-bit); float files are returned as stored
        (nominally in [-1, 1], larger values are kept, not clipped).
        Multi-channel files are **averaged to mono** (the mean of the
        channels, sample by sample).
    sample_rate : int
        The rate of ``x``: ``sample_rate`` if given, else the file's.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a WAV file scipy can read (other format, compressed
        WAV, truncated data: scipy's "Reached EOF prematurely" warning counts
        as an error here), holds no samples or non-finite float samples, or
        ``sample_rate`` is not a positive integer. The message starts with the
        path.
    """
    if sample_rate is not None:
        sample_rate = _check_rate(sample_rate)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "no such file", str(path))
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory, not a WAV file", str(path))
    try:
        with warnings.catch_warnings():
            # scipy warns (instead of raising) when a file ends before the size
            # its header announces, i.e. on a truncated file: an error here.
            # Its warning about unknown chunks (metadata such as bext or cue,
            # which many recorders write) is harmless; that filter is inserted
            # last, so it is matched first.
            warnings.simplefilter("error", wavfile.WavFileWarning)
            warnings.filterwarnings("ignore", "Chunk \\(non-data\\) not understood", wavfile.WavFileWarning)
            rate, data = wavfile.read(path)
    except wavfile.WavFileWarning as exc:
        raise ValueError(f"{path}: truncated WAV file ({exc})") from None
    except (ValueError, EOFError, struct.error, MemoryError, OverflowError, TypeError, IndexError) as exc:
        raise ValueError(f"{path}: not a readable WAV file ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if rate <= 0:
        raise ValueError(f"{path}: invalid sample rate {rate} Hz in the header")
    if data.ndim not in (1, 2) or data.shape[0] == 0 or data.size == 0:
        raise ValueError(f"{path}: the WAV file holds no samples")
    if data.dtype == np.uint8:
        x = (data.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        x = data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    elif np.issubdtype(data.dtype, np.floating):
        x = data.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{path}: the WAV file holds NaN or infinite samples")
    else:  # pragma: no cover - scipy only returns the dtypes above
        raise ValueError(f"{path}: unsupported sample type {data.dtype}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate is not None and sample_rate != rate:
        x = resample(x, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(x), int(rate)


def write_wav(path, x, sample_rate):
    """Write a waveform in [-1, 1] as a mono 16-bit PCM WAV file.

    16-bit PCM is what every player, editor and speech tool reads; its
    quantization noise (about -96 dB of full scale) is far below what speech
    enhancement changes. A sample ``v`` is stored as ``round(v * 32768)``
    limited to ``-32768..32767``, so :func:`read_wav` returns any ``v`` in
    ``[-1, 32767 / 32768]`` within ``0.5 / 32768``, and the values above
    (up to ``1.0``) as ``32767 / 32768``.

    The file is written to a temporary file next to ``path`` and renamed, so an
    interrupted write never leaves a partial file; an existing file is
    replaced.

    Parameters
    ----------
    path : str or path-like
        The file to write.
    x : array-like of shape (n_samples,)
        The waveform (finite values). Samples beyond [-1, 1] are clipped, with
        a :class:`UserWarning` saying how many.
    sample_rate : int
        Sample rate in Hz (positive integer).

    Raises
    ------
    ValueError
        If ``x`` is not 1-D or holds NaN or infinity, or ``sample_rate`` is not
        a positive integer.
    OSError
        If the file cannot be written.
    """
    sample_rate = _check_rate(sample_rate)
    path = Path(path)
    x = np.asarray(x)
    if x.ndim != 1 or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{path}: expected a 1-D numeric waveform; got shape {x.shape}, dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: the waveform holds NaN or infinite values")
    over = np.abs(x) > 1.0
    n_over = int(np.count_nonzero(over))
    if n_over:
        warnings.warn(
            f"{path}: {n_over} of {x.size} samples beyond [-1, 1] (peak {np.max(np.abs(x)):.3g}) clipped",
            UserWarning,
            stacklevel=2,
        )
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    atomic_write(path, lambda f: wavfile.write(f, sample_rate, pcm))


def _find_wavs(folder, pattern="*.wav"):
    """Relative names (POSIX, sorted) of the files under ``folder`` matching ``pattern``.

    Recursive (symbolic links followed, each real folder once); the pattern is
    matched against file names case-insensitively; hidden files and folders
    (names starting with ".") are skipped.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(2, "no such folder", str(folder))
    if not folder.is_dir():
        raise NotADirectoryError(20, "not a folder", str(folder))
    pattern = pattern.lower()
    names = []
    errors = []
    visited = {os.path.realpath(folder)}
    # Symbolic links to folders are followed, each real folder listed once (no loops).
    for root, dirs, files in os.walk(folder, onerror=errors.append, followlinks=True):
        kept = []
        for d in sorted(dirs):
            real = os.path.realpath(os.path.join(root, d))
            if not d.startswith(".") and real not in visited:
                visited.add(real)
                kept.append(d)
        dirs[:] = kept
        rel = Path(root).relative_to(folder)
        for name in files:
            if not name.startswith(".") and fnmatch.fnmatchcase(name.lower(), pattern):
                names.append((rel / name).as_posix())
    if errors:
        exc = errors[0]
        raise OSError(exc.errno, f"cannot list folder ({exc.strerror})", exc.filename)
    if not names:
        raise ValueError(f"{folder}: no files matching {pattern!r} (searched recursively)")
    return sorted(names)


def read_wav_folder(folder, *, sample_rate=None, pattern="*.wav"):
    """Read every WAV file under a folder, recursively.

    Parameters
    ----------
    folder : str or path-like
        The folder. Its sub-folders are searched too; hidden files and
        folders (names starting with ".", such as macOS's ``._name.wav``
        resource files) are skipped.
    sample_rate : int, default=None
        The rate to return every waveform at (files at other rates are
        resampled, see :func:`read_wav`). None: the files' own rate, which
        must then be the same for all files.
    pattern : str, default="*.wav"
        Shell-style pattern matched against file names (not paths),
        case-insensitively, so ``.WAV`` files are found too.

    Returns
    -------
    waveforms : list of ndarray of shape (n_samples,), float64
        One mono waveform per file (see :func:`read_wav`), in the order of
        ``names``.
    names : list of str
        The files' paths relative to ``folder``, with "/" separators, sorted.

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist.
    NotADirectoryError
        If ``folder`` is not a folder.
    ValueError
        If no file matches ``pattern`` under ``folder``, a file cannot be read
        (see :func:`read_wav`), or ``sample_rate`` is None and the files'
        rates differ. Messages name the folder or the file.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_unfold.wavfile import read_wav_folder, write_wav
    >>> folder = getfixture("tmp_path")
    >>> (folder / "b").mkdir()
    >>> write_wav(folder / "b" / "two.wav", np.zeros(800), 8000)
    >>> write_wav(folder / "one.wav", np.zeros(1600), 16000)
    >>> waveforms, names = read_wav_folder(folder, sample_rate=8000)
    >>> names, [len(x) for x in waveforms]
    (['b/two.wav', 'one.wav'], [800, 800])
    """
    if sample_rate is not None:
        sample_rate = _check_rate(sample_rate)
    folder = Path(folder)
    names = _find_wavs(folder, pattern)
    waveforms = []
    first_rate = None
    for name in names:
        x, rate = read_wav(folder / name, sample_rate=sample_rate)
        if first_rate is None:
            first_rate = (rate, name)
        elif rate != first_rate[0]:
            raise ValueError(
                f"{folder / name}: sample rate {rate} Hz differs from {first_rate[0]} Hz of "
                f"{folder / first_rate[1]}; pass sample_rate= to resample them to one rate"
            )
        waveforms.append(x)
    return waveforms, names
