"""Tests of sklearn_unfold.datasets.

Most tests run on a fake cache of synthetic WAV files laid out like the real
one. The real-data tests at the end are opt-in: they run only with
SKLEARN_UNFOLD_TEST_REAL_DATA=1, on a cache that is already there (they never download).
"""

import dataclasses
import hashlib
import json
import os
import shlex
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.io import wavfile
from sklearn.model_selection import GroupKFold

from sklearn_unfold import datasets
from sklearn_unfold.audio import stack_context, istft, n_stft_frames, stft
from sklearn_unfold.datasets import (
    DataFetchError,
    Mixture,
    fetch_asterisk_audio,
    get_data_home,
    load_noise,
    load_utterances,
    make_mixtures,
    make_separation_features,
)

SPEECH = "asterisk-core-sounds-en-wav"
MUSIC = "asterisk-moh-opsound-wav"
SPEECH_SUBDIR = Path("unpacked", SPEECH, "usr/share/asterisk/sounds/en_US_f_Allison")
MUSIC_SUBDIR = Path("unpacked", MUSIC, "usr/share/asterisk/moh")

# Fake utterances: relative path -> length in samples. The split below was
# computed by hand with zlib.crc32(path.encode()) % 5 == 0.
FAKE_UTTERANCES = {
    "activated.wav": 12000,  # test
    "vm-hello.wav": 16000,  # test
    "vm-goodbye.wav": 9600,  # test
    "a/b/deep.wav": 20000,  # test, nested two levels
    "beep.wav": 3200,  # test, shorter than 1 s
    "digits/1.wav": 8800,
    "digits/2.wav": 10400,
    "letters/b.wav": 20800,  # longer than the shortest training track
    "exactly-one.wav": 8000,  # exactly 1 s: kept
    "almost-one.wav": 7999,  # just under 1 s: dropped
    "welcome.wav": 13600,
    "followme/call.wav": 11200,
    "short.wav": 4000,
}
TEST_KEPT = ["a/b/deep.wav", "activated.wav", "vm-goodbye.wav", "vm-hello.wav"]
TRAIN_KEPT = [
    "digits/1.wav",
    "digits/2.wav",
    "exactly-one.wav",
    "followme/call.wav",
    "letters/b.wav",
    "welcome.wav",
]
FAKE_TRACKS = {
    "macroform-cold_day.wav": 24000,
    "macroform-robot_dity.wav": 28000,
    "macroform-the_simplicity.wav": 30000,
    "manolo_camp-morning_coffee.wav": 16000,  # shorter than letters/b.wav
    "reno_project-system.wav": 32000,
}


def _write_wav(path, n_samples, seed, rate=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(-20000, 20000, n_samples).astype(np.int16)
    wavfile.write(path, rate, data)
    return data


def _build_fake_home(root):
    """Synthetic cache; returns {relpath or track name: int16 samples}."""
    written = {}
    for i, (relpath, n) in enumerate(FAKE_UTTERANCES.items()):
        written[relpath] = _write_wav(root / SPEECH_SUBDIR / relpath, n, seed=i)
    for i, (name, n) in enumerate(FAKE_TRACKS.items()):
        written[name] = _write_wav(root / MUSIC_SUBDIR / name, n, seed=100 + i)
    (root / SPEECH_SUBDIR / "README.txt").write_text("not audio")
    return written


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_asterisk")
    return root, _build_fake_home(root)


@pytest.fixture
def no_apt(monkeypatch):
    """Fail loudly if anything tries to look for or run apt/dpkg."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"apt/dpkg must not be used here: {args}")

    monkeypatch.setattr(datasets.subprocess, "run", forbidden)
    monkeypatch.setattr(datasets.shutil, "which", forbidden)


def test_fake_split_matches_the_rule():
    # Guards the hand-computed split of the fake data above.
    for relpath in FAKE_UTTERANCES:
        assert (zlib.crc32(relpath.encode()) % 5 == 0) == (
            relpath in TEST_KEPT or relpath == "beep.wav"
        )


# --------------------------------------------------------------------------
# Cache location and fetching
# --------------------------------------------------------------------------


def test_get_data_home(monkeypatch, tmp_path):
    monkeypatch.delenv("SKLEARN_UNFOLD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert get_data_home() == tmp_path / ".cache" / "sklearn_unfold" / "asterisk"
    monkeypatch.setenv("SKLEARN_UNFOLD_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"  # the argument wins
    assert get_data_home("~/x") == tmp_path / "x"


def test_fetch_cached_is_offline(fake, no_apt, monkeypatch):
    root, _ = fake
    assert fetch_asterisk_audio(root) == root
    assert fetch_asterisk_audio(str(root), download_if_missing=False) == root
    monkeypatch.setenv("SKLEARN_UNFOLD_DATA", str(root))
    assert fetch_asterisk_audio() == root
    assert [p for p, _ in load_utterances("test")] == TEST_KEPT


def test_fetch_not_cached_without_download(tmp_path, no_apt):
    with pytest.raises(DataFetchError, match="download_if_missing=False") as info:
        fetch_asterisk_audio(tmp_path, download_if_missing=False)
    assert isinstance(info.value, OSError)
    assert SPEECH in str(info.value) and MUSIC in str(info.value)


@pytest.mark.parametrize("missing", ["apt-get", "dpkg"])
def test_fetch_without_apt_or_dpkg(tmp_path, monkeypatch, missing):
    monkeypatch.setattr(
        datasets.shutil, "which", lambda name: None if name == missing else f"/usr/bin/{name}"
    )
    monkeypatch.setattr(datasets.subprocess, "run", pytest.fail)
    with pytest.raises(DataFetchError) as info:
        fetch_asterisk_audio(tmp_path / "cache")
    message = str(info.value)
    for needed in (f"{missing} not found", SPEECH, MUSIC, "apt-get download", "dpkg -x"):
        assert needed in message
    assert not (tmp_path / "cache").exists()


class FakeApt:
    """Stands in for subprocess.run: apt-get that only knows the packages after an
    update with private lists, and dpkg -x that lays out one fake WAV."""

    def __init__(self, wav_source, *, known=False, update_helps=True, dpkg_fails=(), interrupt=()):
        self.wav_source = wav_source
        self.known = known
        self.update_helps = update_helps
        self.dpkg_fails = dpkg_fails
        self.interrupt = interrupt
        self.calls = []

    def __call__(self, cmd, *, cwd=None, **kwargs):
        self.calls.append((list(cmd), cwd))
        tool = Path(cmd[0]).name
        if tool == "apt-get" and cmd[-1] == "update":
            assert any(c.startswith("Dir::State::Lists=") for c in cmd)
            self.known = self.update_helps
            return subprocess.CompletedProcess(cmd, 0, "", "")
        if tool == "apt-get":
            packages = cmd[cmd.index("download") + 1 :]
            if not self.known:
                return subprocess.CompletedProcess(
                    cmd, 100, "", f"E: Unable to locate package {packages[0]}"
                )
            for package in packages:
                (Path(cwd) / f"{package}_1.0_all.deb").write_bytes(b"deb")
            return subprocess.CompletedProcess(cmd, 0, "", "")
        assert tool == "dpkg" and cmd[1] == "-x"
        package = Path(cmd[2]).name.split("_")[0]
        subdir = SPEECH_SUBDIR if package == SPEECH else MUSIC_SUBDIR
        target = Path(cmd[3]) / subdir.relative_to(Path("unpacked", package))
        target.mkdir(parents=True)
        (target / "x.wav").write_bytes(self.wav_source.read_bytes())
        if package in self.interrupt:
            raise KeyboardInterrupt
        if package in self.dpkg_fails:
            return subprocess.CompletedProcess(cmd, 2, "", "dpkg-deb: error: truncated")
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.fixture
def fake_apt(fake, monkeypatch):
    monkeypatch.setattr(datasets.shutil, "which", lambda name: f"/usr/bin/{name}")

    def install(**kwargs):
        apt = FakeApt(fake[0] / SPEECH_SUBDIR / "activated.wav", **kwargs)
        monkeypatch.setattr(datasets.subprocess, "run", apt)
        return apt

    return install


def _leftovers(root):
    return [p.name for p in root.iterdir() if p.name.startswith(".fetch")]


def test_fetch_retries_with_private_lists(tmp_path, fake_apt):
    apt = fake_apt(known=False)
    root = tmp_path / "cache"
    assert fetch_asterisk_audio(root) == root
    assert (root / SPEECH_SUBDIR / "x.wav").is_file()
    assert (root / MUSIC_SUBDIR / "x.wav").is_file()
    assert _leftovers(root) == []
    commands = [cmd for cmd, _ in apt.calls]
    assert [cmd[-1] for cmd in commands[:3]] == [MUSIC, "update", MUSIC]
    assert commands[0][1:] == ["download", SPEECH, MUSIC]
    # The update and the second download share the private lists inside the cache.
    options = commands[1][1:-1]
    assert commands[2][1:] == options + ["download", SPEECH, MUSIC]
    lists = Path(options[options.index("-o") + 1].split("=", 1)[1])
    assert root in lists.parents
    assert [cmd[1] for cmd in commands[3:]] == ["-x", "-x"]
    # Cached now: nothing runs again.
    n_calls = len(apt.calls)
    fetch_asterisk_audio(root)
    assert len(apt.calls) == n_calls


def test_fetch_with_known_packages_downloads_once(tmp_path, fake_apt, capsys):
    apt = fake_apt(known=True)
    fetch_asterisk_audio(tmp_path, verbose=True)
    out = capsys.readouterr().out
    assert "apt-get download" in out and "dpkg -x" in out and "audio cached in" in out
    tools = [(Path(cmd[0]).name, cmd[1]) for cmd, _ in apt.calls]
    assert tools == [("apt-get", "download"), ("dpkg", "-x"), ("dpkg", "-x")]


def test_fetch_download_failure(tmp_path, fake_apt):
    # The update "succeeds" but the packages stay unknown.
    apt = fake_apt(known=False, update_helps=False)
    with pytest.raises(DataFetchError, match="Unable to locate package") as info:
        fetch_asterisk_audio(tmp_path)
    assert SPEECH in str(info.value) and MUSIC in str(info.value)
    assert not (tmp_path / "unpacked").exists() and _leftovers(tmp_path) == []
    assert [cmd[-1] for cmd, _ in apt.calls] == [MUSIC, "update", MUSIC]


def test_failed_unpack_leaves_no_half_cache(tmp_path, fake_apt):
    fake_apt(known=True, dpkg_fails=(MUSIC,))
    with pytest.raises(DataFetchError, match="truncated"):
        fetch_asterisk_audio(tmp_path)
    # The speech tree was complete and is kept; the music tree is absent, not half there.
    assert (tmp_path / SPEECH_SUBDIR / "x.wav").is_file()
    assert not (tmp_path / "unpacked" / MUSIC).exists()
    assert _leftovers(tmp_path) == []
    with pytest.raises(DataFetchError, match=MUSIC):
        fetch_asterisk_audio(tmp_path, download_if_missing=False)
    # A new fetch only asks for the missing package.
    apt = fake_apt(known=True)
    fetch_asterisk_audio(tmp_path)
    assert apt.calls[0][0][1:] == ["download", MUSIC]
    assert (tmp_path / MUSIC_SUBDIR / "x.wav").is_file()


def test_interrupted_fetch_leaves_no_half_cache(tmp_path, fake_apt):
    fake_apt(known=True, interrupt=(SPEECH,))
    with pytest.raises(KeyboardInterrupt):
        fetch_asterisk_audio(tmp_path)
    assert not (tmp_path / "unpacked" / SPEECH).exists()
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------
# The manifest: the cache is checked on every load
# --------------------------------------------------------------------------

MANIFEST = "sklearn_unfold-manifest.json"


def _manifest(root, package):
    return json.loads((root / "unpacked" / package / MANIFEST).read_text())


@pytest.fixture
def home(tmp_path, no_apt):
    """A fresh fake cache whose manifests were recorded by a first load."""
    root = tmp_path / "cache"
    _build_fake_home(root)
    fetch_asterisk_audio(root, download_if_missing=False)
    return root


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# kind -> (how to damage the cache, file the error must name, what it must say)
DAMAGE = {
    "deleted WAV": (
        lambda r: (r / SPEECH_SUBDIR / "digits/2.wav").unlink(),
        SPEECH_SUBDIR / "digits/2.wav",
        "is missing",
    ),
    "truncated WAV": (
        lambda r: _truncate(r / SPEECH_SUBDIR / "welcome.wav"),
        SPEECH_SUBDIR / "welcome.wav",
        "has 13622 bytes where 27244 were unpacked",
    ),
    "missing music track": (
        lambda r: (r / MUSIC_SUBDIR / "macroform-cold_day.wav").unlink(),
        MUSIC_SUBDIR / "macroform-cold_day.wav",
        "is missing",
    ),
    "added WAV": (
        lambda r: _write_wav(r / SPEECH_SUBDIR / "digits/3.wav", 9000, seed=0),
        SPEECH_SUBDIR / "digits/3.wav",
        "was not unpacked from the package",
    ),
    "unreadable manifest": (
        lambda r: (r / "unpacked" / MUSIC / MANIFEST).write_text("{"),
        Path("unpacked", MUSIC, MANIFEST),
        "is unreadable",
    ),
}


def test_first_load_records_a_manifest_of_a_cache_made_without_one(tmp_path, no_apt):
    root = tmp_path / "cache"
    _build_fake_home(root)
    assert not (root / "unpacked" / SPEECH / MANIFEST).exists()
    fetch_asterisk_audio(root, download_if_missing=False)
    for package, subdir, names in [
        (SPEECH, SPEECH_SUBDIR, [*FAKE_UTTERANCES, "README.txt"]),
        (MUSIC, MUSIC_SUBDIR, FAKE_TRACKS),
    ]:
        manifest = _manifest(root, package)
        assert manifest["package"] == package and manifest["deb"] is None
        prefix = subdir.relative_to(Path("unpacked", package)).as_posix()
        assert manifest["files"] == {
            f"{prefix}/{name}": (root / subdir / name).stat().st_size for name in names
        }


def test_cache_made_without_a_manifest_must_parse(tmp_path, no_apt):
    root = tmp_path / "cache"
    _build_fake_home(root)
    _truncate(root / SPEECH_SUBDIR / "letters/b.wav")
    with pytest.raises(DataFetchError, match="letters/b.wav is not a complete WAV file"):
        fetch_asterisk_audio(root, download_if_missing=False)
    # Nothing is recorded for the bad tree, so the next load checks it again.
    assert not (root / "unpacked" / SPEECH / MANIFEST).exists()
    assert (root / "unpacked" / MUSIC / MANIFEST).exists()


def test_cache_without_a_manifest_that_cannot_record_one_still_loads(
    tmp_path, no_apt, monkeypatch
):
    root = tmp_path / "cache"
    _build_fake_home(root)

    def read_only(tree, manifest):
        raise PermissionError(13, "Permission denied", str(tree))

    monkeypatch.setattr(datasets, "_write_manifest", read_only)
    with pytest.warns(UserWarning, match="parsed again on each load"):
        assert [p for p, _ in load_utterances("test", data_home=root)] == TEST_KEPT


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_cache_is_named_not_used(home, monkeypatch, kind):
    damage, bad_file, says = DAMAGE[kind]
    damage(home)
    with pytest.raises(DataFetchError) as info:
        fetch_asterisk_audio(home, download_if_missing=False)
    message = str(info.value)
    assert f"{home / bad_file} {says}" in message
    assert "download_if_missing=False" in message and "dpkg -x" in message
    package = bad_file.parts[1]
    assert f"rm -r -- {home / 'unpacked' / package}" in message
    # Loading tries to fetch the package again; without apt the error still
    # names the file.
    monkeypatch.setattr(datasets.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="fetching it again"):
        with pytest.raises(DataFetchError, match="apt-get and dpkg not found") as info:
            make_mixtures("train", n_utterances=2, data_home=home)
    assert str(home / bad_file) in str(info.value)


def test_the_reported_damage_is_no_longer_silent(home, monkeypatch):
    # The cache: 297 utterances and 3 noise tracks were used silently.
    (home / SPEECH_SUBDIR / "digits/1.wav").unlink()
    _truncate(home / SPEECH_SUBDIR / "welcome.wav")
    (home / MUSIC_SUBDIR / "macroform-robot_dity.wav").unlink()
    with pytest.raises(DataFetchError) as info:
        fetch_asterisk_audio(home, download_if_missing=False)
    message = str(info.value)
    assert f"{home / SPEECH_SUBDIR / 'digits/1.wav'} is missing (and 1 more problem)" in message
    assert f"{home / MUSIC_SUBDIR / 'macroform-robot_dity.wav'} is missing" in message


def test_damaged_package_is_fetched_again(home, fake_apt):
    _truncate(home / MUSIC_SUBDIR / "reno_project-system.wav")
    apt = fake_apt(known=True)
    with pytest.warns(UserWarning, match=r"reno_project-system.wav has \d+ bytes"):
        assert fetch_asterisk_audio(home) == home
    # Only the damaged package was downloaded; its old tree is gone.
    assert apt.calls[0][0][1:] == ["download", MUSIC]
    assert sorted(p.name for p in (home / MUSIC_SUBDIR).iterdir()) == ["x.wav"]
    assert _leftovers(home) == []
    manifest = _manifest(home, MUSIC)
    assert manifest["deb"] == {
        "file": f"{MUSIC}_1.0_all.deb",
        "size": 3,
        "sha256": hashlib.sha256(b"deb").hexdigest(),
    }
    assert manifest["files"] == {
        "usr/share/asterisk/moh/x.wav": (home / MUSIC_SUBDIR / "x.wav").stat().st_size
    }
    # Intact now: nothing runs again.
    n_calls = len(apt.calls)
    fetch_asterisk_audio(home)
    assert len(apt.calls) == n_calls


def test_fetch_records_a_manifest_with_the_deb_checksum(tmp_path, fake_apt):
    fake_apt(known=True)
    fetch_asterisk_audio(tmp_path)
    for package in (SPEECH, MUSIC):
        manifest = _manifest(tmp_path, package)
        assert manifest["package"] == package
        assert manifest["deb"]["sha256"] == hashlib.sha256(b"deb").hexdigest()
        assert list(manifest["files"]) == [
            (SPEECH_SUBDIR if package == SPEECH else MUSIC_SUBDIR)
            .relative_to(Path("unpacked", package))
            .joinpath("x.wav")
            .as_posix()
        ]
        # Readable by every user of a shared cache, like the unpacked files.
        assert (tmp_path / "unpacked" / package / MANIFEST).stat().st_mode & 0o444 == 0o444


# --------------------------------------------------------------------------
# Unwritable caches and the manual instructions
# --------------------------------------------------------------------------


def test_unwritable_cache_directory_is_a_data_fetch_error(tmp_path, fake_apt, monkeypatch):
    # os.access is mocked: chmod does not stop root (see the test below).
    apt = fake_apt(known=True)
    root = tmp_path / "cache"
    root.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        datasets.os, "access", lambda path, mode: Path(path) != root and real_access(path, mode)
    )
    with pytest.raises(DataFetchError, match="exists but is not writable") as info:
        fetch_asterisk_audio(root)
    assert str(root) in str(info.value) and "data_home=" in str(info.value)
    assert apt.calls == []  # nothing downloaded for nothing


def test_write_failure_in_the_cache_is_a_data_fetch_error(tmp_path, fake_apt, monkeypatch):
    # A directory that os.access calls writable but is not (ACLs, read-only mounts).
    fake_apt(known=True)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(datasets.tempfile, "TemporaryDirectory", denied)
    with pytest.raises(DataFetchError, match="Permission denied") as info:
        fetch_asterisk_audio(tmp_path)
    assert f"Cannot write the audio data into the cache directory {tmp_path}" in str(info.value)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only directories"
)
def test_read_only_cache_directory_is_a_data_fetch_error(tmp_path, fake_apt):
    apt = fake_apt(known=True)
    root = tmp_path / "cache"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(DataFetchError, match="not writable"):
            fetch_asterisk_audio(root)
    finally:
        root.chmod(0o755)
    assert apt.calls == []


def _commands(message):
    """The shell commands (indented lines) of an error message, split as a shell would."""
    return [shlex.split(line) for line in message.splitlines() if line.startswith("    ")]


def test_manual_instructions_quote_paths(tmp_path, no_apt):
    root = tmp_path / "my data" / "Bob's cache"
    with pytest.raises(DataFetchError) as info:
        fetch_asterisk_audio(root, download_if_missing=False)
    commands = _commands(str(info.value))
    for package in (SPEECH, MUSIC):
        assert ["dpkg", "-x", f"{package}_*.deb", str(root / "unpacked" / package)] in commands
    # A damaged tree must be removed first.
    _build_fake_home(root)
    fetch_asterisk_audio(root)  # records the manifests
    (root / SPEECH_SUBDIR / "welcome.wav").unlink()
    with pytest.raises(DataFetchError) as info:
        fetch_asterisk_audio(root, download_if_missing=False)
    commands = _commands(str(info.value))
    assert ["rm", "-r", "--", str(root / "unpacked" / SPEECH)] in commands
    assert ["dpkg", "-x", f"{SPEECH}_*.deb", str(root / "unpacked" / SPEECH)] in commands



# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def test_load_utterances_split_and_duration(fake, no_apt):
    root, written = fake
    test = load_utterances("test", data_home=root)
    train = load_utterances("train", data_home=root)
    everything = load_utterances("all", data_home=root)
    assert [p for p, _ in test] == TEST_KEPT
    assert [p for p, _ in train] == TRAIN_KEPT
    assert [p for p, _ in everything] == sorted(TEST_KEPT + TRAIN_KEPT)
    for relpath, waveform in everything:
        assert waveform.dtype == np.float64
        assert_array_equal(waveform, written[relpath] / 32768.0)
        assert np.abs(waveform).max() <= 1.0
    short = load_utterances("all", data_home=root, min_duration=0.0)
    assert [p for p, _ in short] == sorted(FAKE_UTTERANCES)
    long = load_utterances("train", data_home=root, min_duration=1.5)
    assert [p for p, _ in long] == ["letters/b.wav", "welcome.wav"]


def test_load_noise(fake, no_apt):
    root, written = fake
    test = load_noise("test", data_home=root)
    train = load_noise("train", data_home=root)
    assert [name for name, _ in test] == ["reno_project-system.wav"]
    assert [name for name, _ in train] == sorted(set(FAKE_TRACKS) - {"reno_project-system.wav"})
    for name, waveform in test + train:
        assert_array_equal(waveform, written[name] / 32768.0)


def test_load_rejects_bad_files(tmp_path, no_apt):
    # Each case on a fresh cache: changing a file of a cache that was already
    # loaded would be caught earlier, as damage (see the manifest tests).
    _build_fake_home(tmp_path / "rate")
    wavfile.write(
        tmp_path / "rate" / SPEECH_SUBDIR / "vm-hello.wav", 16000, np.zeros(16000, np.int16)
    )
    with pytest.raises(ValueError, match="16000 Hz"):
        load_utterances("test", data_home=tmp_path / "rate")
    _build_fake_home(tmp_path / "stereo")
    wavfile.write(
        tmp_path / "stereo" / SPEECH_SUBDIR / "vm-hello.wav", 8000, np.zeros((16000, 2), np.int16)
    )
    with pytest.raises(ValueError, match="mono"):
        load_utterances("test", data_home=tmp_path / "stereo")
    # A cache without a manifest cannot know a file is gone; the test track
    # is still checked by name.
    _build_fake_home(tmp_path / "no_test_track")
    (tmp_path / "no_test_track" / MUSIC_SUBDIR / "reno_project-system.wav").unlink()
    with pytest.raises(ValueError, match="reno_project-system.wav"):
        load_noise("train", data_home=tmp_path / "no_test_track")


def test_load_bad_subset(fake):
    with pytest.raises(ValueError, match="subset"):
        load_utterances("dev", data_home=fake[0])
    with pytest.raises(ValueError, match="subset"):
        load_noise("all", data_home=fake[0])


# --------------------------------------------------------------------------
# Mixtures
# --------------------------------------------------------------------------


def _expected_excerpts(root, subset, n_utterances, n_snrs, seed):
    """Replays the draws documented in make_mixtures."""
    utterances = load_utterances(subset, data_home=root)
    tracks = [t for _, t in load_noise(subset, data_home=root)]
    rng = np.random.default_rng(seed)
    if n_utterances is not None:
        utterances = [
            utterances[i] for i in sorted(rng.choice(len(utterances), n_utterances, replace=False))
        ]
    expected, n_wrapped = [], 0
    for relpath, speech in utterances:
        for _ in range(n_snrs):
            track = tracks[rng.integers(len(tracks))]
            n = len(speech)
            if len(track) >= n:
                start = rng.integers(len(track) - n + 1)
                excerpt = track[start : start + n]
            else:
                start = rng.integers(len(track))
                excerpt = np.concatenate([track[start:], track, track])[:n]
                n_wrapped += 1
            expected.append((relpath, excerpt))
    return expected, n_wrapped


@pytest.mark.parametrize(
    "subset, n_utterances", [("test", 3), ("test", None), ("train", None), ("train", 4)]
)
def test_make_mixtures_protocol(fake, no_apt, subset, n_utterances):
    root, written = fake
    snrs = (-6, -3, 0, 3, 6, 9)
    mixtures = make_mixtures(subset, n_utterances=n_utterances, random_state=7, data_home=root)
    kept = TEST_KEPT if subset == "test" else TRAIN_KEPT
    n_utt = len(kept) if n_utterances is None else n_utterances
    assert len(mixtures) == n_utt * len(snrs)
    assert [m.snr for m in mixtures] == list(map(float, snrs)) * n_utt
    chosen = [m.utterance for m in mixtures[:: len(snrs)]]
    assert chosen == sorted(set(chosen)) and set(chosen) <= set(kept)
    expected, n_wrapped = _expected_excerpts(root, subset, n_utterances, len(snrs), seed=7)
    for m, (relpath, excerpt) in zip(mixtures, expected):
        assert m.utterance == relpath
        assert_array_equal(m.speech, written[relpath] / 32768.0)
        assert_allclose(10 * np.log10(np.sum(m.speech**2) / np.sum(m.noise**2)), m.snr, atol=1e-9)
        assert_array_equal(m.mixture, m.speech + m.noise)
        scale = np.sqrt(np.sum(m.speech**2) / np.sum(excerpt**2) / 10 ** (m.snr / 10))
        assert_allclose(m.noise, scale * excerpt, rtol=1e-12)
    if subset == "train" and n_utterances is None:
        assert n_wrapped > 0  # the short track was read circularly at least once


def _find_excerpt(noise, tracks):
    """Brute force: the (track name, start) of which ``noise`` is a scaled, possibly
    circular, excerpt; None if there is none."""
    for name, track in tracks.items():
        circular = np.concatenate([track] * (2 + len(noise) // len(track)))
        k = np.flatnonzero(track != 0)
        scale = noise[0] / track[k]
        # Candidates from the first three samples, then a full check.
        close = np.all(
            np.abs(scale[:, None] * circular[k[:, None] + np.arange(1, 3)] - noise[1:3]) < 1e-9,
            axis=1,
        )
        for start, c in zip(k[close], scale[close]):
            if np.allclose(c * circular[start : start + len(noise)], noise, rtol=1e-10, atol=0):
                return name, int(start)
    return None


def test_make_mixtures_uses_only_the_right_tracks(fake, no_apt):
    root, written = fake
    tracks = {name: written[name] / 32768.0 for name in FAKE_TRACKS}
    found = [
        _find_excerpt(m.noise, tracks)[0]
        for m in make_mixtures("test", n_utterances=None, random_state=3, data_home=root)
    ]
    assert set(found) == {"reno_project-system.wav"}
    found = [
        _find_excerpt(m.noise, tracks)[0]
        for m in make_mixtures("train", n_utterances=None, random_state=3, data_home=root)
    ]
    assert "reno_project-system.wav" not in found and len(set(found)) == 4


def test_make_mixtures_deterministic(fake, no_apt):
    root, _ = fake
    first = make_mixtures("train", n_utterances=3, random_state=1, data_home=root)
    again = make_mixtures("train", n_utterances=3, random_state=1, data_home=root)
    other = make_mixtures("train", n_utterances=3, random_state=2, data_home=root)
    assert len(first) == len(again) == len(other) == 18
    for a, b in zip(first, again):
        assert a.utterance == b.utterance and a.snr == b.snr
        assert_array_equal(a.mixture, b.mixture)
    assert any(
        a.utterance != c.utterance or not np.array_equal(a.noise, c.noise)
        for a, c in zip(first, other)
    )
    generator = make_mixtures(
        "train", n_utterances=3, random_state=np.random.default_rng(1), data_home=root
    )
    for a, b in zip(first, generator):
        assert_array_equal(a.mixture, b.mixture)


def test_mixture_records_are_frozen(fake, no_apt):
    m = make_mixtures("test", n_utterances=1, snrs=[0.0, 3.0], data_home=fake[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        m[0].snr = 1.0
    for array in (m[0].speech, m[0].noise, m[0].mixture):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1.0
    assert m[0].speech is m[1].speech  # one utterance, one array


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_utterances": 5}, "only 4"),
        ({"n_utterances": 0}, "n_utterances"),
        ({"snrs": []}, "snrs"),
        ({"snrs": [0.0, np.nan]}, "snrs"),
        ({"random_state": -1}, "random_state"),
        ({"subset": "all"}, "subset"),
    ],
)
def test_make_mixtures_errors(fake, no_apt, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_mixtures(**{"subset": "test", **kwargs}, data_home=fake[0])


# --------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------


def _synthetic_mixtures():
    rng = np.random.default_rng(0)
    records = []
    for utterance, n in [("u1.wav", 900), ("u2.wav", 1333), ("u1.wav", 900), ("u3.wav", 95)]:
        speech = rng.standard_normal(n)
        noise = 0.5 * rng.standard_normal(n)
        records.append(Mixture(utterance, 0.0, speech, noise, speech + noise))
    return records


@pytest.mark.parametrize("n_context", [1, 3, 9])
def test_make_separation_features(n_context):
    mixtures = _synthetic_mixtures()
    X, Y, groups, stfts = make_separation_features(mixtures, n_context=n_context, return_stft=True)
    frames = [n_stft_frames(len(m.mixture)) for m in mixtures]
    assert X.shape == (sum(frames), n_context * 129) and X.dtype == np.float32
    width = n_context * 129
    assert Y.shape == (sum(frames), 2 * width) and Y.dtype == np.float32
    assert groups.shape == (sum(frames),)
    assert_array_equal(groups, np.repeat([0, 1, 0, 2], frames))
    start = 0
    for m, n_frames, Z in zip(mixtures, frames, stfts):
        block = slice(start, start + n_frames)
        assert Z.dtype == np.complex64 and Z.shape == (n_frames, 129)
        magnitude = np.abs(stft(m.mixture))
        assert_allclose(X[block, -129:], magnitude, rtol=1e-6, atol=1e-6)
        for j in range(n_context):
            # Block j of row t is frame max(t - T + 1 + j, 0) of the SAME mixture.
            index = np.maximum(np.arange(n_frames) - n_context + 1 + j, 0)
            assert_allclose(
                X[block, j * 129 : (j + 1) * 129], magnitude[index], rtol=1e-6, atol=1e-6
            )
        # Each source is stacked exactly like the mixture.
        for part, source in ((slice(0, width), m.speech), (slice(width, 2 * width), m.noise)):
            expected = stack_context(np.abs(stft(source)).astype(np.float32), n_context)
            assert_allclose(Y[block, part], expected, rtol=1e-6, atol=1e-6)
        assert_allclose(Y[block, width - 129 : width], np.abs(stft(m.speech)), rtol=1e-6, atol=1e-6)
        assert_allclose(istft(Z, length=len(m.mixture)), m.mixture, atol=1e-5)
        start += n_frames


def test_make_separation_features_float64_and_groupkfold():
    mixtures = _synthetic_mixtures()
    X, Y, groups = make_separation_features(mixtures, n_context=2, dtype=np.float64)
    assert X.dtype == Y.dtype == np.float64
    assert_allclose(X[:, -129:], np.vstack([np.abs(stft(m.mixture)) for m in mixtures]), atol=1e-12)
    for train, test in GroupKFold(n_splits=3).split(X, Y, groups):
        assert not set(groups[train]) & set(groups[test])


def test_make_separation_features_errors():
    mixtures = _synthetic_mixtures()
    with pytest.raises(ValueError, match="empty"):
        make_separation_features([])
    with pytest.raises(TypeError, match="Mixture"):
        make_separation_features([np.ones(100)])
    with pytest.raises(ValueError, match="dtype"):
        make_separation_features(mixtures, dtype=np.int32)
    with pytest.raises(ValueError, match="dtype"):
        make_separation_features(mixtures, dtype="banana")
    with pytest.raises(ValueError, match="n_context"):
        make_separation_features(mixtures, n_context=0)


# --------------------------------------------------------------------------
# Real data (skipped when the packages cannot be fetched)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_home():
    # Opt-in: by default no test reads (or writes a manifest into) a cache
    # that exists on one machine only. With SKLEARN_UNFOLD_TEST_REAL_DATA=1,
    # only a cache that is already there is used: tests never download.
    if os.environ.get("SKLEARN_UNFOLD_TEST_REAL_DATA") != "1":
        pytest.skip("real-audio tests are opt-in: set SKLEARN_UNFOLD_TEST_REAL_DATA=1")
    try:
        return fetch_asterisk_audio(download_if_missing=False)
    except DataFetchError as exc:
        pytest.skip(" ".join(f"real audio unavailable: {exc}".splitlines()[:2]))


def test_real_utterance_counts(real_home):
    everything = load_utterances("all", data_home=real_home)
    test = load_utterances("test", data_home=real_home)
    train = load_utterances("train", data_home=real_home)
    assert (len(everything), len(train), len(test)) == (363, 299, 64)
    # 568 WAVs in all, of which the 10 silence/ files are not speech.
    assert len(load_utterances("all", data_home=real_home, min_duration=0.0)) == 558
    assert not any(p.startswith("silence/") for p, _ in everything)
    assert {p for p, _ in test} | {p for p, _ in train} == {p for p, _ in everything}
    assert all(zlib.crc32(p.encode()) % 5 == 0 for p, _ in test)
    assert "digits/billion.wav" in {p for p, _ in test}
    assert all(len(x) >= 8000 and np.abs(x).max() <= 1.0 for _, x in everything)


def test_real_noise_and_test_mixtures(real_home):
    assert [n for n, _ in load_noise("test", data_home=real_home)] == ["reno_project-system.wav"]
    assert [n for n, _ in load_noise("train", data_home=real_home)] == [
        "macroform-cold_day.wav",
        "macroform-robot_dity.wav",
        "macroform-the_simplicity.wav",
        "manolo_camp-morning_coffee.wav",
    ]
    mixtures = make_mixtures("test", data_home=real_home)
    assert len(mixtures) == 240
    chosen = [m.utterance for m in mixtures[::6]]
    # Pins the benchmark's test set (numpy Generator, seed 0).
    assert chosen[:3] == ["activated.wav", "auth-incorrect.wav", "call-fwd-no-ans.wav"]
    assert chosen[-1] == "vm-unknown-caller.wav" and len(set(chosen)) == 40
    for m in mixtures[:12]:
        assert_allclose(10 * np.log10(np.sum(m.speech**2) / np.sum(m.noise**2)), m.snr, atol=1e-9)


def test_make_separation_features_without_targets():
    mixtures = _synthetic_mixtures()
    X, Y, groups, stfts = make_separation_features(mixtures, n_context=3, return_stft=True)
    X2, Y2, groups2, stfts2 = make_separation_features(mixtures, n_context=3, return_stft=True, targets=False)
    assert Y2 is None
    assert_array_equal(X2, X)
    assert_array_equal(groups2, groups)
    for Z, Z2 in zip(stfts, stfts2):
        assert_array_equal(Z2, Z)


def test_make_separation_features_phase_sensitive_target():
    from sklearn_unfold.audio import source_magnitudes

    mixtures = _synthetic_mixtures()
    X, Y, _ = make_separation_features(mixtures, n_context=3)
    X_psa, Y_psa, _ = make_separation_features(mixtures, n_context=3, target="phase_sensitive")
    assert_array_equal(X_psa, X)  # the input is the mixture's magnitude either way
    width = 3 * 129
    start = 0
    for m in mixtures:
        Z = stft(m.mixture)
        n_frames = Z.shape[0]
        block = slice(start, start + n_frames)
        for part, source in ((slice(0, width), m.speech), (slice(width, 2 * width), m.noise)):
            expected = stack_context(source_magnitudes(stft(source), Z, "phase_sensitive").astype(np.float32), 3)
            assert_array_equal(Y_psa[block, part], expected)
        start += n_frames
    # Each target lies in [0, |M|]; the magnitude target does not.
    for part in (slice(0, width), slice(width, 2 * width)):
        assert np.all(Y_psa[:, part] >= 0) and np.all(Y_psa[:, part] <= X * (1 + 1e-6))
    assert np.any(Y[:, :width] > X)
    with pytest.raises(ValueError, match="target"):
        make_separation_features(mixtures, target="ideal")
