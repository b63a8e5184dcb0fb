"""sklearn_unfold.wavfile: every common WAV format in, 16-bit PCM out, resampling, folders, clear errors.

Every file is written here into tmp_path: by scipy where it can write the
format, as raw bytes (24-bit PCM, WAVE_FORMAT_EXTENSIBLE, truncated files,
extra chunks) where it cannot.
"""

import math
import struct
import warnings

import numpy as np
import pytest
from scipy.io import wavfile
from scipy.signal import resample_poly

from sklearn_unfold.wavfile import read_wav, read_wav_folder, resample, write_wav

RNG = np.random.default_rng(0)


def raw_wav(path, payload, *, rate, channels=1, bits=16, format_tag=1, extensible=False, chunks=b"",
            riff_size=None, data_size=None):
    """A WAV file from raw sample bytes, with the header written by hand."""
    block_align = channels * bits // 8
    fields = struct.pack("<HHIIHH", 0xFFFE if extensible else format_tag, channels, rate, rate * block_align,
                         block_align, bits)
    if extensible:
        # cbSize, valid bits, channel mask, then the sub-format GUID
        # 0000XXXX-0000-0010-8000-00aa00389b71 with XXXX the format tag.
        guid = struct.pack("<I", format_tag) + bytes.fromhex("000010008000 00aa00389b71".replace(" ", ""))
        fields += struct.pack("<HHI", 22, bits, 0) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fields)) + fields + chunks
    body += b"data" + struct.pack("<I", len(payload) if data_size is None else data_size) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body) if riff_size is None else riff_size) + body)
    return path


def int24_bytes(values):
    """Little-endian 3-byte two's complement samples."""
    return np.asarray(values, dtype="<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


# --------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------
def test_int16_is_scaled_by_full_scale(tmp_path):
    pcm = np.array([-32768, -16384, -1, 0, 1, 16384, 32767], dtype=np.int16)
    wavfile.write(tmp_path / "a.wav", 16000, pcm)
    x, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and x.dtype == np.float64 and x.ndim == 1
    np.testing.assert_array_equal(x, pcm / 32768.0)
    assert x.min() == -1.0 and x.max() < 1.0


def test_uint8_is_centred_on_128(tmp_path):
    pcm = np.array([0, 64, 128, 192, 255], dtype=np.uint8)
    wavfile.write(tmp_path / "a.wav", 8000, pcm)
    x, rate = read_wav(tmp_path / "a.wav")
    np.testing.assert_array_equal(x, [-1.0, -0.5, 0.0, 0.5, 127 / 128])
    assert rate == 8000


@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
def test_int24_from_raw_bytes(tmp_path, extensible):
    values = np.array([-(2**23), -(2**22), -1, 0, 1, 123456, 2**23 - 1])
    path = raw_wav(tmp_path / "a.wav", int24_bytes(values), rate=48000, bits=24, extensible=extensible)
    x, rate = read_wav(path)
    assert rate == 48000
    np.testing.assert_array_equal(x, values / 2.0**23)


def test_int32_is_scaled_by_2_to_31(tmp_path):
    pcm = np.array([-(2**31), -(2**30), -1, 0, 1, 2**31 - 1], dtype=np.int32)
    wavfile.write(tmp_path / "a.wav", 8000, pcm)
    x, _ = read_wav(tmp_path / "a.wav")
    np.testing.assert_array_equal(x, pcm / 2.0**31)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_files_are_returned_as_stored(tmp_path, dtype):
    samples = np.array([-1.0, -0.25, 0.0, 1e-7, 0.5, 1.5], dtype=dtype)  # 1.5: kept, not clipped
    wavfile.write(tmp_path / "a.wav", 22050, samples)
    x, rate = read_wav(tmp_path / "a.wav")
    assert rate == 22050 and x.dtype == np.float64
    np.testing.assert_array_equal(x, samples.astype(np.float64))


def test_stereo_is_averaged_to_mono(tmp_path):
    pcm = np.array([[1000, -1000], [2000, 4000], [-32768, -32768]], dtype=np.int16)
    wavfile.write(tmp_path / "a.wav", 8000, pcm)
    x, _ = read_wav(tmp_path / "a.wav")
    np.testing.assert_array_equal(x, [0.0, 3000 / 32768, -1.0])


def test_harmless_extra_chunks_are_skipped_silently(tmp_path):
    # A 'bext' chunk (broadcast WAV metadata), which scipy does not know, before the data.
    chunk = b"bext" + struct.pack("<I", 4) + b"abcd"
    pcm = np.array([100, -200, 300], dtype="<i2")
    path = raw_wav(tmp_path / "a.wav", pcm.tobytes(), rate=8000, chunks=chunk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, _ = read_wav(path)
    np.testing.assert_array_equal(x, pcm / 32768.0)


# --------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------
@pytest.mark.parametrize("rates", [(8000, 16000), (16000, 8000), (44100, 16000)])
def test_resampling_to_another_rate(tmp_path, rates):
    rate_in, rate_out = rates
    n = rate_in // 2
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate_in)
    wavfile.write(tmp_path / "a.wav", rate_in, tone)  # float64 WAV: no quantization
    x, rate = read_wav(tmp_path / "a.wav", sample_rate=rate_out)
    g = math.gcd(rate_in, rate_out)
    assert rate == rate_out
    assert x.shape == (math.ceil(n * (rate_out // g) / (rate_in // g)),)
    # Exactly scipy's rational polyphase resampler with the reduced factors.
    np.testing.assert_array_equal(x, resample_poly(tone, rate_out // g, rate_in // g))
    # And it is the same tone at the new rate, away from the edges.
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(x.size) / rate_out)
    middle = slice(x.size // 10, -x.size // 10)
    assert np.max(np.abs(x[middle] - expected[middle])) < 1e-3


def test_same_rate_is_not_resampled(tmp_path):
    pcm = RNG.integers(-32768, 32767, size=1000, dtype=np.int16)
    wavfile.write(tmp_path / "a.wav", 8000, pcm)
    x, rate = read_wav(tmp_path / "a.wav", sample_rate=8000)
    assert rate == 8000
    np.testing.assert_array_equal(x, pcm / 32768.0)


def test_resample_function():
    x = RNG.standard_normal(441)
    np.testing.assert_array_equal(resample(x, 44100, 16000), resample_poly(x, 160, 441))
    assert resample(x, 8000, 8000) is x
    assert resample(np.zeros(10, dtype=np.float32), 8000, 16000).dtype == np.float32
    for bad in (0, -8000, 8000.5, True, None, "8000"):
        with pytest.raises(ValueError, match="positive integer"):
            resample(x, bad, 16000)


@pytest.mark.parametrize("bad", [0, -1, 16000.5, True, "16000"])
def test_bad_sample_rate_argument(tmp_path, bad):
    write_wav(tmp_path / "a.wav", np.zeros(10), 8000)
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        read_wav(tmp_path / "a.wav", sample_rate=bad)
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        write_wav(tmp_path / "b.wav", np.zeros(10), bad)


# --------------------------------------------------------------------------
# Errors name the file
# --------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file") as info:
        read_wav(tmp_path / "missing.wav")
    assert str(tmp_path / "missing.wav") in str(info.value)


def test_directory_is_not_a_wav_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        read_wav(tmp_path)


def test_not_a_wav_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\n")
    with pytest.raises(ValueError, match="not a readable WAV file") as info:
        read_wav(path)
    assert str(path) in str(info.value)


def test_compressed_format_is_refused(tmp_path):
    # format tag 2: Microsoft ADPCM, which scipy does not decode.
    path = raw_wav(tmp_path / "adpcm.wav", b"\x00" * 64, rate=8000, bits=4, format_tag=2)
    with pytest.raises(ValueError, match="adpcm.wav: not a readable WAV file"):
        read_wav(path)


def test_truncated_file_is_an_error_not_a_warning(tmp_path):
    pcm = RNG.integers(-1000, 1000, size=4000, dtype=np.int16)
    wavfile.write(tmp_path / "full.wav", 8000, pcm)
    data = (tmp_path / "full.wav").read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: len(data) - 1000])  # the header still announces 4000 samples
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's WavFileWarning does not escape either
        with pytest.raises(ValueError, match="cut.wav: truncated WAV file"):
            read_wav(path)


def test_header_only_file_is_an_error(tmp_path):
    wavfile.write(tmp_path / "full.wav", 8000, np.zeros(100, dtype=np.int16))
    path = tmp_path / "header.wav"
    path.write_bytes((tmp_path / "full.wav").read_bytes()[:20])
    with pytest.raises(ValueError, match="header.wav: not a readable WAV file"):
        read_wav(path)


def test_file_without_samples(tmp_path):
    wavfile.write(tmp_path / "empty.wav", 8000, np.zeros(0, dtype=np.int16))
    with pytest.raises(ValueError, match="empty.wav: the WAV file holds no samples"):
        read_wav(tmp_path / "empty.wav")


def test_non_finite_float_samples(tmp_path):
    wavfile.write(tmp_path / "nan.wav", 8000, np.array([0.0, np.nan, 0.5], dtype=np.float32))
    with pytest.raises(ValueError, match="nan.wav: the WAV file holds NaN or infinite samples"):
        read_wav(tmp_path / "nan.wav")


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------
def test_write_is_16_bit_pcm_and_round_trips(tmp_path):
    x = RNG.uniform(-1, 32767 / 32768, size=5000)
    x[:3] = [-1.0, 0.0, 1.0]
    write_wav(tmp_path / "a.wav", x, 16000)
    rate, raw = wavfile.read(tmp_path / "a.wav")
    assert rate == 16000 and raw.dtype == np.int16 and raw.ndim == 1
    assert raw[:3].tolist() == [-32768, 0, 32767]
    y, _ = read_wav(tmp_path / "a.wav")
    np.testing.assert_allclose(y[3:], x[3:], rtol=0, atol=0.5 / 32768 + 1e-15)
    assert y[2] == 32767 / 32768  # above 32767.5 / 32768: the largest 16-bit value


def test_write_clips_with_a_warning(tmp_path):
    x = np.array([0.5, 1.5, -2.0, 1.0, -1.0])
    with pytest.warns(UserWarning, match=r"2 of 5 samples beyond \[-1, 1\] \(peak 2\) clipped"):
        write_wav(tmp_path / "a.wav", x, 8000)
    _, raw = wavfile.read(tmp_path / "a.wav")
    assert raw.tolist() == [16384, 32767, -32768, 32767, -32768]


def test_write_within_range_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_wav(tmp_path / "a.wav", np.array([-1.0, 1.0, 0.25], dtype=np.float32), 8000)


@pytest.mark.parametrize("x", [np.array([0.0, np.nan]), np.array([np.inf]), np.zeros((2, 3))])
def test_write_refuses_bad_waveforms(tmp_path, x):
    with pytest.raises(ValueError, match="a.wav"):
        write_wav(tmp_path / "a.wav", x, 8000)
    assert not list(tmp_path.iterdir())


def test_write_replaces_and_leaves_no_temporary_file(tmp_path):
    write_wav(tmp_path / "a.wav", np.full(100, 0.5), 8000)
    write_wav(tmp_path / "a.wav", np.full(10, -0.5), 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]
    x, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and x.tolist() == [-0.5] * 10


def test_write_into_a_missing_folder_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        write_wav(tmp_path / "nope" / "a.wav", np.zeros(10), 8000)


# --------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------
def make_tree(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    write_wav(root / "b.wav", np.full(800, 0.1), 8000)
    write_wav(root / "a.WAV", np.full(1600, 0.2), 16000)
    write_wav(root / "sub" / "c.wav", np.full(800, 0.3), 8000)
    write_wav(root / "sub" / "deeper" / "d.wav", np.full(800, 0.4), 8000)
    write_wav(root / ".hidden" / "e.wav", np.full(800, 0.5), 8000)
    (root / "._b.wav").write_bytes(b"macOS resource fork, not audio")
    (root / "readme.txt").write_text("not audio")


def test_folder_is_read_recursively_and_sorted(tmp_path):
    make_tree(tmp_path)
    waveforms, names = read_wav_folder(tmp_path, sample_rate=8000)
    assert names == ["a.WAV", "b.wav", "sub/c.wav", "sub/deeper/d.wav"]
    assert [len(x) for x in waveforms] == [800, 800, 800, 800]
    np.testing.assert_allclose([x[400] for x in waveforms], [0.2, 0.1, 0.3, 0.4], atol=1e-3)


def test_folder_links_are_followed_without_loops(tmp_path):
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    write_wav(tmp_path / "data" / "sub" / "a.wav", np.zeros(80), 8000)
    write_wav(tmp_path / "elsewhere" / "b.wav", np.zeros(80), 8000)
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "data" / "sub" / "loop").symlink_to(tmp_path / "data")
    _, names = read_wav_folder(tmp_path / "data")
    assert names == ["linked/b.wav", "sub/a.wav"]


def test_folder_pattern(tmp_path):
    make_tree(tmp_path)
    _, names = read_wav_folder(tmp_path, sample_rate=8000, pattern="[bc].wav")
    assert names == ["b.wav", "sub/c.wav"]


def test_folder_at_mixed_rates_needs_a_rate(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(ValueError, match=r"b.wav: sample rate 8000 Hz differs from 16000 Hz of .*a.WAV"):
        read_wav_folder(tmp_path)
    _, names = read_wav_folder(tmp_path / "sub")
    assert names == ["c.wav", "deeper/d.wav"]


def test_empty_folder(tmp_path):
    (tmp_path / "only-text").mkdir()
    (tmp_path / "only-text" / "readme.txt").write_text("no audio")
    with pytest.raises(ValueError, match=r"only-text: no files matching '\*.wav' \(searched recursively\)"):
        read_wav_folder(tmp_path / "only-text")


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        read_wav_folder(tmp_path / "nope")
    write_wav(tmp_path / "a.wav", np.zeros(10), 8000)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        read_wav_folder(tmp_path / "a.wav")


def test_unreadable_file_in_a_folder_is_named(tmp_path):
    write_wav(tmp_path / "good.wav", np.zeros(100), 8000)
    (tmp_path / "bad.wav").write_bytes(b"RIFF")
    with pytest.raises(ValueError, match="bad.wav: not a readable WAV file"):
        read_wav_folder(tmp_path)
