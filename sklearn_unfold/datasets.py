"""Real recorded speech and noise from Debian packages, and the benchmark mixtures.

Two Debian packages hold real 8 kHz, 16-bit mono recordings (CC-BY-SA 3.0):

- ``asterisk-core-sounds-en-wav``: English telephony prompts spoken by one
  female speaker (Allison Smith), about 25 minutes;
- ``asterisk-moh-opsound-wav``: five music-on-hold tracks (Opsound artists),
  used as non-stationary noise.

:func:`fetch_asterisk_audio` downloads them once with ``apt-get download``
(no root needed) and unpacks them with ``dpkg -x`` into a cache directory;
everything else works offline from that cache. A manifest recorded with each
unpacked package (file names and sizes, checksum of the ``.deb``) is checked
on every load, so a damaged cache is fetched again or reported, never used.

Benchmark protocol (fixed; other code compares against it)
----------------------------------------------------------
- Speech: every WAV of the ``en_US_f_Allison`` tree (recursive) lasting at
  least 1 s. An utterance with relative path ``p`` (forward slashes, e.g.
  ``"digits/1.wav"``) is a *test* utterance when
  ``zlib.crc32(p.encode()) % 5 == 0`` and a *training* one otherwise.
- Noise: training = the four tracks other than ``reno_project-system.wav``;
  test = ``reno_project-system.wav``, unseen in training.
- Mixtures (:func:`make_mixtures`): each chosen utterance at every input SNR
  in ``{-6, -3, 0, 3, 6, 9}`` dB, mixed with a random excerpt of a noise track
  scaled to that SNR over the utterance (:func:`sklearn_unfold.audio.mix_at_snr`).
  The test set is 40 test utterances (seeded choice, ``random_state=0``)
  against the test track.

The speech tree also holds ``silence/1.wav`` ... ``silence/10.wav``: 1 to 10 s
of near-silence (peak 2 / 32768). They are not utterances (no speech, so no
SDR can be measured on them) and are left out: 299 training and 64 test
utterances remain.
"""

import hashlib
import json
import os
import shlex
import shutil
import struct
import subprocess
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from ._files import atomic_write
from ._compat import Interval, StrOptions, validate_params
from .audio import SAMPLE_RATE, TARGETS, mix_at_snr, n_stft_frames, source_magnitudes, stack_context, stft

__all__ = [
    "DEFAULT_SNRS",
    "NOISE_PACKAGE",
    "SPEECH_PACKAGE",
    "TEST_NOISE",
    "DataFetchError",
    "Mixture",
    "fetch_asterisk_audio",
    "get_data_home",
    "load_noise",
    "load_utterances",
    "make_mixtures",
    "make_separation_features",
]

SPEECH_PACKAGE = "asterisk-core-sounds-en-wav"
NOISE_PACKAGE = "asterisk-moh-opsound-wav"
TEST_NOISE = "reno_project-system.wav"
DEFAULT_SNRS = (-6, -3, 0, 3, 6, 9)

# Layout of the cache, relative to the data home (the same layout as
# shared/data/fetch_asterisk_audio.sh): one `dpkg -x` tree per package.
_AUDIO_DIRS = {
    SPEECH_PACKAGE: Path("unpacked", SPEECH_PACKAGE, "usr/share/asterisk/sounds/en_US_f_Allison"),
    NOISE_PACKAGE: Path("unpacked", NOISE_PACKAGE, "usr/share/asterisk/moh"),
}
_ENV_VAR = "SKLEARN_UNFOLD_DATA"
_APT_TIMEOUT_S = 900
# Written at the top of each unpacked package tree, next to ``usr/``.
_MANIFEST_NAME = "sklearn_unfold-manifest.json"
_MANIFEST_FORMAT = 1


class DataFetchError(OSError):
    """The audio packages are not usable from the cache and could not be fetched.

    Raised when a package is missing or its cached copy is damaged (a file
    missing, truncated, modified or added since it was unpacked) and it cannot
    be downloaded again; the message names the problem and how to fix it.
    """


# --------------------------------------------------------------------------
# Cache location and fetching
# --------------------------------------------------------------------------


def get_data_home(data_home=None):
    """Directory of the audio cache.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Explicit location. When None, the environment variable
        ``SKLEARN_UNFOLD_DATA`` is used if set, else
        ``~/.cache/sklearn_unfold/asterisk``.

    Returns
    -------
    path : pathlib.Path
        The directory (``~`` expanded); it may not exist yet.
    """
    if data_home is None:
        data_home = (
            os.environ.get(_ENV_VAR) or Path.home() / ".cache" / "sklearn_unfold" / "asterisk"
        )
    return Path(data_home).expanduser()


def _tree(root, package):
    """The ``dpkg -x`` tree of ``package`` in the cache ``root``."""
    return root / "unpacked" / package


def _manual_instructions(root, damaged=()):
    # Paths are shell-quoted: the commands must survive being pasted into a
    # shell whatever the cache path holds (spaces, quotes, ...).
    lines = [
        f"The audio comes from the Debian packages {SPEECH_PACKAGE} and {NOISE_PACKAGE}. "
        "To install them by hand on Debian/Ubuntu (no root needed for the download; "
        "run `apt-get update` first if apt does not know them):"
    ]
    lines += [f"    rm -r -- {shlex.quote(str(_tree(root, package)))}" for package in damaged]
    lines.append(f'    cd "$(mktemp -d)" && apt-get download {SPEECH_PACKAGE} {NOISE_PACKAGE}')
    lines += [
        f"    dpkg -x {package}_*.deb {shlex.quote(str(_tree(root, package)))}"
        for package in (SPEECH_PACKAGE, NOISE_PACKAGE)
    ]
    lines.append(
        f"or pass data_home= (or set {_ENV_VAR}) to a directory laid out that way "
        "(a tree installed by hand is checked and recorded on its first load)."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------
# The manifest: what was unpacked, checked on every load
# --------------------------------------------------------------------------


def _is_manifest_entry(relpath):
    """The manifest itself and its temporary files are not part of the tree."""
    return "/" not in relpath and relpath.lstrip(".").startswith(_MANIFEST_NAME)


def _list_files(tree):
    """``{relative posix path: size in bytes}`` of every file of a tree, manifest aside."""
    files = {}
    for path in sorted(tree.rglob("*")):
        relpath = path.relative_to(tree).as_posix()
        if path.is_file() and not _is_manifest_entry(relpath):
            files[relpath] = path.stat().st_size
    return files


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(tree, manifest):
    """Write ``tree/<manifest>`` atomically: readers see no file or a complete one.

    Readable by all, like the files dpkg unpacked (a shared cache).
    """
    atomic_write(
        tree / _MANIFEST_NAME,
        lambda f: json.dump(manifest, f, indent=1, sort_keys=True),
        binary=False,
        readable_by_all=True,
        sync=True,
    )


def _wav_problem(path):
    """Why ``path`` is not a complete, readable WAV file; None if it is one."""
    try:
        with warnings.catch_warnings():
            # scipy only warns when the data chunk ends before the size in its
            # header, i.e. on a truncated file.
            warnings.simplefilter("error", wavfile.WavFileWarning)
            wavfile.read(path)
    except (ValueError, EOFError, OSError, struct.error, wavfile.WavFileWarning) as exc:
        return f"{path} is not a complete WAV file ({exc})"
    return None


def _summary(problems):
    """The first problem, and how many more there are."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _verify(tree, audio_dir, files):
    """Problems of a tree against its manifest's ``files``, first one first."""
    problems = []
    for relpath, size in sorted(files.items()):
        path = tree / relpath
        try:
            actual = path.stat().st_size if path.is_file() else None
        except OSError as exc:
            problems.append(f"{path} cannot be read ({exc})")
            continue
        if actual is None:
            problems.append(f"{path} is missing")
        elif actual != size:
            problems.append(
                f"{path} has {actual} bytes where {size} were unpacked (truncated or modified)"
            )
    # A WAV that the package did not hold would silently join the protocol.
    if audio_dir.is_dir():
        problems += [
            f"{path} was not unpacked from the package (added later)"
            for path in sorted(audio_dir.rglob("*.wav"))
            if path.relative_to(tree).as_posix() not in files
        ]
    return problems


def _adopt(tree, package, audio_dir):
    """Check a tree made without a manifest (older version, or by hand) and record it.

    Every WAV must parse to its end; the manifest is then written so that later
    loads only compare names and sizes. Files deleted before this first check
    cannot be noticed. Returns the problems found (empty when adopted).
    """
    if not audio_dir.is_dir():
        return [f"{audio_dir} is missing"]
    files = _list_files(tree)
    problems = [
        problem
        for relpath in files
        if relpath.endswith(".wav") and (problem := _wav_problem(tree / relpath)) is not None
    ]
    if problems:
        return problems
    manifest = {
        "format": _MANIFEST_FORMAT,
        "package": package,
        "deb": None,
        "origin": "cache without a manifest: every WAV parsed completely on its first load",
        "files": files,
    }
    try:
        _write_manifest(tree, manifest)
    except OSError as exc:
        # A read-only shared cache still loads; it is parsed again next time.
        warnings.warn(
            f"{tree} has no manifest and one cannot be written there ({exc}); every WAV "
            "was parsed instead and is parsed again on each load.",
            stacklevel=4,
        )
    return []


def _check_package(root, package):
    """Whether the cached ``package`` can be used.

    Returns
    -------
    problem : None or (str, str)
        None when the tree matches its manifest (one is built for a tree that
        has none, see :func:`_adopt`); else ``(kind, reason)`` with kind
        ``"missing"`` or ``"damaged"``.
    """
    tree = _tree(root, package)
    if not tree.is_dir():
        return "missing", f"{package} is not cached"
    audio_dir = root / _AUDIO_DIRS[package]
    manifest_path = tree / _MANIFEST_NAME
    if not manifest_path.exists():
        problems = _adopt(tree, package, audio_dir)
    else:
        try:
            files = json.loads(manifest_path.read_text())["files"]
            if not isinstance(files, dict):
                raise TypeError("'files' is not a mapping")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems = [f"its manifest {manifest_path} is unreadable ({exc})"]
        else:
            problems = _verify(tree, audio_dir, files)
    if problems:
        return "damaged", f"{package} is damaged: {_summary(problems)}"
    return None


# --------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------


def _run(cmd, *, cwd=None, verbose=False):
    """Run a command, capturing its output; a timeout reads as a failure."""
    if verbose:
        print("[fetch_asterisk_audio] $ " + " ".join(map(str, cmd)))
    try:
        return subprocess.run(
            [str(c) for c in cmd],
            check=False,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_APT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 124, "", f"timed out after {exc.timeout} s")


def _tail(completed):
    text = (completed.stderr or "") + (completed.stdout or "")
    return text.strip()[-800:]


def _apt_download(apt_get, packages, workdir, root, verbose, damaged=()):
    """``apt-get download`` the packages into ``workdir``; return their .deb paths.

    When the system's package lists do not know the packages (e.g. a fresh
    container that never ran ``apt-get update``), retry with private package
    lists under ``workdir``, which a normal user may update.
    """
    result = _run([apt_get, "download", *packages], cwd=workdir, verbose=verbose)
    if result.returncode != 0:
        if verbose:
            print("[fetch_asterisk_audio] apt-get download failed; updating private package lists")
        apt_dir = workdir / "apt"
        (apt_dir / "lists" / "partial").mkdir(parents=True)
        (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True)
        options = [
            "-o",
            f"Dir::State::Lists={apt_dir / 'lists'}",
            "-o",
            f"Dir::Cache={apt_dir / 'cache'}",
        ]
        result = _run([apt_get, *options, "update"], cwd=workdir, verbose=verbose)
        if result.returncode == 0:
            result = _run([apt_get, *options, "download", *packages], cwd=workdir, verbose=verbose)
        if result.returncode != 0:
            raise DataFetchError(
                f"`apt-get download` failed (exit {result.returncode}):\n{_tail(result)}\n"
                + _manual_instructions(root, damaged)
            )
    debs = {}
    for package in packages:
        found = sorted(workdir.glob(f"{package}_*.deb"))
        if not found:
            raise DataFetchError(
                f"`apt-get download` reported success but left no {package}_*.deb.\n"
                + _manual_instructions(root, damaged)
            )
        debs[package] = found[-1]
    return debs


def _install(unpacked, final, staging):
    """Move a finished ``dpkg -x`` tree into place with one atomic rename."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        # A damaged tree, or a broken one from an older, non-atomic fetch: put
        # it in the staging area (deleted afterwards) and replace it.
        final.rename(staging / f"stale-{final.name}")
    try:
        unpacked.rename(final)
    except OSError:
        # Another process finished the same package first.
        if not final.is_dir():
            raise


def _download(root, packages, damaged, verbose):
    """Fetch, unpack, record and install ``packages`` into the cache ``root``."""
    apt_get, dpkg = shutil.which("apt-get"), shutil.which("dpkg")
    if apt_get is None or dpkg is None:
        absent = " and ".join(
            name for name, path in [("apt-get", apt_get), ("dpkg", dpkg)] if path is None
        )
        raise DataFetchError(
            f"Cannot fetch the audio data into {root}: {absent} not found (a Debian/Ubuntu "
            "system is needed to download it).\n" + _manual_instructions(root, damaged)
        )
    elsewhere = (
        f"Pass data_home= (or set {_ENV_VAR}) to a writable directory, or install by hand.\n"
    )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFetchError(
            f"Cannot create the cache directory {root}: {exc}\n"
            + elsewhere
            + _manual_instructions(root, damaged)
        ) from exc
    # Checked before downloading anything: the download would be lost.
    if not os.access(root, os.W_OK | os.X_OK):
        raise DataFetchError(
            f"Cannot fetch the audio data: the cache directory {root} exists but is not "
            "writable.\n" + elsewhere + _manual_instructions(root, damaged)
        )
    try:
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
            staging = Path(tmp)
            debs = _apt_download(apt_get, packages, staging, root, verbose, damaged)
            for package in packages:
                unpacked = staging / "unpacked" / package
                unpacked.mkdir(parents=True)
                result = _run([dpkg, "-x", debs[package], unpacked], verbose=verbose)
                if result.returncode != 0 or not (staging / _AUDIO_DIRS[package]).is_dir():
                    raise DataFetchError(
                        f"`dpkg -x {debs[package].name}` failed (exit {result.returncode}):\n"
                        f"{_tail(result)}\n" + _manual_instructions(root, damaged)
                    )
                deb = debs[package]
                # Written inside the tree before it is moved into place, so the
                # tree and its record appear together.
                _write_manifest(
                    unpacked,
                    {
                        "format": _MANIFEST_FORMAT,
                        "package": package,
                        "deb": {
                            "file": deb.name,
                            "size": deb.stat().st_size,
                            "sha256": _sha256(deb),
                        },
                        "origin": "apt-get download, dpkg -x",
                        "files": _list_files(unpacked),
                    },
                )
                _install(unpacked, _tree(root, package), staging)
    except DataFetchError:
        raise
    except OSError as exc:
        # E.g. permission denied despite os.access (ACLs, read-only mounts), a full disk.
        raise DataFetchError(
            f"Cannot write the audio data into the cache directory {root}: {exc}\n"
            + elsewhere
            + _manual_instructions(root, damaged)
        ) from exc


def fetch_asterisk_audio(data_home=None, *, download_if_missing=True, verbose=False):
    """Download and cache the speech and music packages; check the cache; return it.

    Nothing is downloaded, and apt is never called, when the audio is
    already in the cache and intact. Otherwise ``apt-get download`` fetches
    ``asterisk-core-sounds-en-wav`` and ``asterisk-moh-opsound-wav`` (no root
    needed; if apt's lists do not know them, private lists inside the cache
    are updated first) and ``dpkg -x`` unpacks each into
    ``<data_home>/unpacked/<package>``. Work happens in a temporary directory
    inside the cache and each tree is moved into place with one rename, so an
    interrupted fetch never leaves a half-filled cache.

    Each unpacked tree holds a manifest, ``sklearn_unfold-manifest.json``,
    written with it: the name and size of every file unpacked, and the name,
    size and SHA-256 of the ``.deb`` it came from (for provenance). Every call
    (hence every load) checks the tree against it: names and sizes, and no WAV
    added. A damaged tree (a file missing, truncated, modified in size or
    added) is fetched again with a warning, or, when that is not possible,
    named in a :class:`DataFetchError`.

    A tree without a manifest (cached by an older version of this package, or
    installed by hand) is checked once more thoroughly: every WAV must parse
    to its end. The manifest is then written (its ``deb`` is null) and later
    loads compare names and sizes only. Files deleted before that first check
    cannot be noticed; delete the tree to fetch it afresh if in doubt. A
    read-only tree without a manifest is parsed again on every load, with a
    warning.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Cache directory; see :func:`get_data_home` (``SKLEARN_UNFOLD_DATA``,
        else ``~/.cache/sklearn_unfold/asterisk``).
    download_if_missing : bool, default=True
        If False, raise :class:`DataFetchError` instead of downloading a
        missing or damaged package.
    verbose : bool, default=False
        Print the commands run.

    Returns
    -------
    data_home : pathlib.Path
        The cache. Speech is under
        ``unpacked/asterisk-core-sounds-en-wav/usr/share/asterisk/sounds/en_US_f_Allison``
        and music under ``unpacked/asterisk-moh-opsound-wav/usr/share/asterisk/moh``.

    Raises
    ------
    DataFetchError
        (an ``OSError``) if the audio is missing or damaged and cannot be
        fetched: apt-get or dpkg absent, no network, the cache directory not
        writable, or ``download_if_missing=False``. The message names the
        first damaged file, if any, and gives the commands to install the
        data by hand.

    Warns
    -----
    UserWarning
        When a damaged package is fetched again (its old tree is deleted).
    """
    root = get_data_home(data_home)
    problems = {}
    for package in _AUDIO_DIRS:
        problem = _check_package(root, package)
        if problem is not None:
            problems[package] = problem
    if not problems:
        return root
    damaged = [package for package, (kind, _) in problems.items() if kind == "damaged"]
    report = f"The audio cache in {root} is not usable:\n" + "".join(
        f"  - {reason}\n" for _, reason in problems.values()
    )
    if not download_if_missing:
        action = "downloaded" if not damaged else "fetched again"
        raise DataFetchError(
            f"{report}It is not {action} because download_if_missing=False; call "
            "fetch_asterisk_audio with downloads allowed, or install it by hand.\n"
            + _manual_instructions(root, damaged)
        )
    for package in damaged:
        warnings.warn(
            f"The cached {problems[package][1]}; fetching it again.", UserWarning, stacklevel=2
        )
    try:
        _download(root, list(problems), damaged, verbose)
    except DataFetchError as exc:
        if not damaged:
            raise
        raise DataFetchError(f"{report}{exc}") from exc
    if verbose:
        print(f"[fetch_asterisk_audio] audio cached in {root}")
    return root


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def _read_wav(path):
    """Mono WAV at 8 kHz -> float64 waveform in [-1, 1]."""
    rate, data = wavfile.read(path)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path} has sample rate {rate} Hz; {SAMPLE_RATE} Hz was expected.")
    if data.ndim != 1:
        raise ValueError(f"{path} has {data.shape[1]} channels; mono was expected.")
    if data.dtype == np.uint8:
        return (data.astype(np.float64) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    return data.astype(np.float64)


#: Folder of the speech package that holds recorded silence, not speech.
NON_SPEECH_DIR = "silence/"


def _is_test_utterance(relpath):
    return zlib.crc32(relpath.encode()) % 5 == 0


@validate_params(
    {
        "subset": [StrOptions({"train", "test", "all"})],
        "data_home": [str, os.PathLike, None],
        "min_duration": [Interval(Real, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def load_utterances(subset="train", *, data_home=None, min_duration=1.0):
    """Speech utterances of the benchmark split.

    Every WAV of the ``en_US_f_Allison`` tree lasting at least
    ``min_duration`` seconds, except the ``silence/`` folder, whose 1-10 s
    files hold no speech (peak amplitude 2 / 32768) and would make an SDR
    meaningless; an utterance is in the test subset when
    ``zlib.crc32(relpath.encode()) % 5 == 0``, in the training subset
    otherwise. The data is fetched first if needed, and the cache checked
    against its manifest (:func:`fetch_asterisk_audio`).

    Parameters
    ----------
    subset : {"train", "test", "all"}, default="train"
        Which part of the split.
    data_home : str or path-like, default=None
        Cache directory; see :func:`get_data_home`.
    min_duration : float, default=1.0
        Shortest utterance kept, in seconds.

    Returns
    -------
    utterances : list of (str, ndarray of shape (n_samples,))
        ``(relpath, waveform)`` sorted by ``relpath`` (forward slashes,
        relative to the speaker's directory, e.g. ``"digits/1.wav"``);
        float64 waveforms in [-1, 1] at 8000 Hz.
    """
    speech_dir = fetch_asterisk_audio(data_home) / _AUDIO_DIRS[SPEECH_PACKAGE]
    relpaths = sorted(
        relpath
        for relpath in (path.relative_to(speech_dir).as_posix() for path in speech_dir.rglob("*.wav"))
        if not relpath.startswith(NON_SPEECH_DIR)
    )
    if subset != "all":
        relpaths = [p for p in relpaths if _is_test_utterance(p) == (subset == "test")]
    utterances = []
    for relpath in relpaths:
        waveform = _read_wav(speech_dir / relpath)
        if waveform.shape[0] >= min_duration * SAMPLE_RATE:
            utterances.append((relpath, waveform))
    return utterances


@validate_params(
    {"subset": [StrOptions({"train", "test"})], "data_home": [str, os.PathLike, None]},
    prefer_skip_nested_validation=True,
)
def load_noise(subset="train", *, data_home=None):
    """Music tracks used as noise.

    Parameters
    ----------
    subset : {"train", "test"}, default="train"
        ``"test"`` is the single track ``reno_project-system.wav``;
        ``"train"`` the four others.
    data_home : str or path-like, default=None
        Cache directory; see :func:`get_data_home`.

    Returns
    -------
    tracks : list of (str, ndarray of shape (n_samples,))
        ``(file name, waveform)`` sorted by name; float64 in [-1, 1] at 8000 Hz.
    """
    music_dir = fetch_asterisk_audio(data_home) / _AUDIO_DIRS[NOISE_PACKAGE]
    names = sorted(path.name for path in music_dir.glob("*.wav"))
    if TEST_NOISE not in names:
        raise ValueError(f"The test noise {TEST_NOISE} is missing from {music_dir}.")
    names = [name for name in names if (name == TEST_NOISE) == (subset == "test")]
    return [(name, _read_wav(music_dir / name)) for name in names]


# --------------------------------------------------------------------------
# Mixtures and features
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Mixture:
    """One noisy utterance of the benchmark.

    The waveforms are read-only float64 arrays at 8000 Hz of equal length,
    with ``mixture == speech + noise``; records of the same utterance at
    different SNRs share one ``speech`` array.

    Attributes
    ----------
    utterance : str
        Relative path of the clean utterance (e.g. ``"digits/1.wav"``).
    snr : float
        Input SNR in dB: ``10 log10(sum(speech**2) / sum(noise**2))``.
    speech : ndarray of shape (n_samples,)
        Clean speech.
    noise : ndarray of shape (n_samples,)
        The noise excerpt, scaled to ``snr``.
    mixture : ndarray of shape (n_samples,)
        ``speech + noise``.
    """

    utterance: str
    snr: float
    speech: np.ndarray
    noise: np.ndarray
    mixture: np.ndarray


def _read_only(a):
    a.setflags(write=False)
    return a


def _noise_excerpt(track, n_samples, rng):
    """A random excerpt of ``n_samples`` of ``track`` (wrapping around if too short)."""
    if track.shape[0] >= n_samples:
        start = rng.integers(track.shape[0] - n_samples + 1)
        return track[start : start + n_samples]
    start = rng.integers(track.shape[0])
    return np.take(track, np.arange(start, start + n_samples), mode="wrap")


def _mix(speech, excerpt, snr, relpath):
    """:func:`~sklearn_unfold.audio.mix_at_snr`, naming the utterance on failure."""
    try:
        return mix_at_snr(speech, excerpt, snr)
    except ValueError as exc:
        raise ValueError(f"Cannot mix {relpath} at {snr} dB: {exc}") from exc


@validate_params(
    {
        "subset": [StrOptions({"train", "test"})],
        "n_utterances": [Interval(Integral, 1, None, closed="left"), None],
        "snrs": ["array-like"],
        "random_state": [Interval(Integral, 0, None, closed="left"), np.random.Generator, None],
        "data_home": [str, os.PathLike, None],
    },
    prefer_skip_nested_validation=True,
)
def make_mixtures(
    subset="test",
    *,
    n_utterances=40,
    snrs=DEFAULT_SNRS,
    random_state=0,
    data_home=None,
):
    """Noisy utterances of the benchmark: speech + music at several input SNRs.

    The draws, all from ``rng = numpy.random.default_rng(random_state)``:

    1. unless ``n_utterances`` is None, ``rng.choice(n_available,
       n_utterances, replace=False)`` picks utterances of
       :func:`load_utterances` ``(subset)``, kept in path order;
    2. for each chosen utterance (path order), for each SNR (given order):
       a track ``rng.integers(n_tracks)`` of :func:`load_noise` ``(subset)``
       and a start ``rng.integers(len(track) - len(utterance) + 1)``; a track
       shorter than the utterance is read circularly from
       ``rng.integers(len(track))``. The excerpt is scaled to the SNR with
       :func:`sklearn_unfold.audio.mix_at_snr`.

    Parameters
    ----------
    subset : {"test", "train"}, default="test"
        Test utterances with the unseen test track, or training utterances
        with the four training tracks.
    n_utterances : int or None, default=40
        Number of utterances drawn; None uses all of the subset.
    snrs : array-like of float, default=(-6, -3, 0, 3, 6, 9)
        Input SNRs in dB.
    random_state : int, numpy.random.Generator or None, default=0
        Seed of the draws. An int gives the same mixtures on every call.
    data_home : str or path-like, default=None
        Cache directory; see :func:`get_data_home`.

    Returns
    -------
    mixtures : list of Mixture
        ``n_utterances * len(snrs)`` records, utterance-major then SNR order.

    Examples
    --------
    >>> from sklearn_unfold.datasets import make_mixtures
    >>> test = make_mixtures("test")  # doctest: +SKIP
    >>> len(test), test[0].snr  # doctest: +SKIP
    (240, -6.0)
    """
    _, _, mixtures = _mixture_stream(
        subset, n_utterances=n_utterances, snrs=snrs, random_state=random_state, data_home=data_home
    )
    return list(mixtures)


def _mixture_stream(subset, *, n_utterances, snrs, random_state, data_home):
    """:func:`make_mixtures` one mixture at a time, for callers that need not hold them all.

    The utterances are read, chosen and checked (every error of
    :func:`make_mixtures` about them is raised) before this returns; the
    mixing draws are made as the generator is consumed, in the order of
    :func:`make_mixtures`, so consuming it whole gives the same records.

    Returns
    -------
    utterances : list of (str, ndarray)
        The chosen ``(relpath, speech)``, in path order; each is mixed at
        every SNR, so mixture ``i`` has the length of utterance
        ``i // len(snrs)``.
    snrs : ndarray of float64
        The SNRs, checked.
    mixtures : generator of Mixture
        ``len(utterances) * len(snrs)`` records, utterance-major then SNR
        order, each computed when it is asked for.
    """
    snrs = np.asarray(snrs, dtype=np.float64).ravel()
    if snrs.size == 0 or not np.all(np.isfinite(snrs)):
        raise ValueError(f"snrs must be a non-empty list of finite values in dB; got {snrs}.")
    utterances = load_utterances(subset, data_home=data_home)
    tracks = [track for _, track in load_noise(subset, data_home=data_home)]
    rng = np.random.default_rng(random_state)
    if n_utterances is not None:
        if n_utterances > len(utterances):
            raise ValueError(
                f"n_utterances={n_utterances} but the {subset} subset has only "
                f"{len(utterances)} utterances."
            )
        chosen = np.sort(rng.choice(len(utterances), size=n_utterances, replace=False))
        utterances = [utterances[i] for i in chosen]

    def mixtures():
        for relpath, speech in utterances:
            speech = _read_only(speech)
            for snr in snrs:
                track = tracks[rng.integers(len(tracks))]
                excerpt = _noise_excerpt(track, speech.shape[0], rng)
                mixture, noise = _mix(speech, excerpt, snr, relpath)
                yield Mixture(relpath, float(snr), speech, _read_only(noise), _read_only(mixture))

    return utterances, snrs, mixtures()


@validate_params(
    {
        "mixtures": ["array-like"],
        "n_context": [Interval(Integral, 1, None, closed="left")],
        "dtype": "no_validation",
        "return_stft": ["boolean"],
        "targets": ["boolean"],
        "target": [StrOptions(set(TARGETS))],
    },
    prefer_skip_nested_validation=True,
)
def make_separation_features(
    mixtures, *, n_context=9, dtype=np.float32, return_stft=False, targets=True, target="magnitude"
):
    """Features and targets for speech/noise separation from mixtures.

    For each mixture, the STFT magnitudes of the mixture are stacked with
    ``n_context`` frames of left context (:func:`sklearn_unfold.audio.stack_context`;
    the context never crosses mixtures), and so are the speech and noise
    magnitudes (sec. 5.1 of [1]_, ``T = 9``): the layout
    :class:`sklearn_unfold.DeepNMF` fits on, whose fixed bases are learned on
    context-stacked source spectra and whose target is each source's last
    frame (:func:`sklearn_unfold.metrics.target_frames` extracts it).

    Parameters
    ----------
    mixtures : list of Mixture
        E.g. from :func:`make_mixtures`.
    n_context : int, default=9
        Frames of left context ``T`` per row, ending with the target frame.
    dtype : {np.float32, np.float64}, default=np.float32
        dtype of ``X`` and ``Y`` (float32 halves the memory of the estimators).
    return_stft : bool, default=False
        Also return each mixture's complex STFT, for resynthesis with
        :func:`sklearn_unfold.audio.resynthesize`.
    targets : bool, default=True
        Compute ``Y``. False returns ``Y=None`` and skips the sources' STFTs
        (test sets need only the mixture and its STFT).
    target : {"magnitude", "phase_sensitive"}, default="magnitude"
        What ``Y`` holds for each source: its magnitude ``|S|``, or the
        phase-sensitive target ``clip(|S| cos(angle S - angle M), 0, |M|)``
        of Erdogan et al. 2015 (:func:`sklearn_unfold.audio.source_magnitudes`).
        ``X`` is the mixture's magnitude either way.

    Returns
    -------
    X : ndarray of shape (n_frames, n_context * 129)
        Context-stacked mixture magnitudes; the last 129 columns are the
        target frame.
    Y : ndarray of shape (n_frames, 2 * n_context * 129)
        ``[speech | noise]`` magnitudes (or phase-sensitive targets), each
        stacked exactly like ``X``.
    groups : ndarray of shape (n_frames,), int
        Utterance id (index in the sorted unique utterance paths): one
        utterance at several SNRs shares its id, for ``GroupKFold``.
    stfts : list of ndarray of shape (n_frames_i, 129), complex
        Only with ``return_stft=True``: the mixture STFTs, complex64 for
        float32. Rows ``sum(n_frames_j for j < i)`` onwards of ``X`` belong
        to mixture ``i``.

    References
    ----------
    .. [1] J. R. Hershey, J. Le Roux and F. Weninger, "Deep unfolding:
       model-based inspiration of novel deep architectures", 2014, sec. 5.1.
    """
    try:
        valid = np.dtype(dtype) in (np.float32, np.float64)
    except TypeError:
        valid = False
    if not valid:
        raise ValueError(f"dtype must be np.float32 or np.float64; got {dtype!r}.")
    dtype = np.dtype(dtype)
    mixtures = list(mixtures)
    if not mixtures:
        raise ValueError("mixtures is empty.")
    for m in mixtures:
        if not isinstance(m, Mixture):
            raise TypeError(f"mixtures must hold Mixture records; got {type(m).__name__}.")
    frames = [n_stft_frames(m.mixture.shape[0]) for m in mixtures]
    bounds = np.concatenate([[0], np.cumsum(frames)])
    n_freqs = stft(np.zeros(1)).shape[1]
    X = np.empty((bounds[-1], n_context * n_freqs), dtype=dtype)
    width = n_context * n_freqs
    Y = np.empty((bounds[-1], 2 * width), dtype=dtype) if targets else None
    _, utterance_ids = np.unique([m.utterance for m in mixtures], return_inverse=True)
    groups = np.repeat(utterance_ids.astype(np.intp), frames)
    complex_dtype = np.result_type(dtype, np.complex64)
    stfts = []
    # One mixture at a time into preallocated arrays keeps the peak memory at
    # the size of the output.
    for m, start, stop in zip(mixtures, bounds[:-1], bounds[1:]):
        Z = stft(m.mixture)
        X[start:stop] = stack_context(np.abs(Z).astype(dtype), n_context)
        if targets:
            for block, source in ((slice(0, width), m.speech), (slice(width, 2 * width), m.noise)):
                magnitudes = source_magnitudes(stft(source), Z, target).astype(dtype)
                Y[start:stop, block] = stack_context(magnitudes, n_context)
        if return_stft:
            stfts.append(Z.astype(complex_dtype))
    if return_stft:
        return X, Y, groups, stfts
    return X, Y, groups
