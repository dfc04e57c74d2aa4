"""RapidOCR data and task metrics for ``optimize.py``: rendered text (Pillow) as PaddleOCR's
preprocessing makes it, box F1 for the detector and character error rate for the recogniser.

The metrics compare against the fp32 model's own results on the same samples (det: its boxes) or
the rendered ground truth (rec: the strings drawn), so a candidate's score is a task figure, not a
closeness figure."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import deploykit as dk

WORDS = ("invoice", "total", "amount", "date", "name", "address", "street", "city", "order", "number",
         "price", "quantity", "receipt", "thank", "you", "cash", "card", "change", "tax", "paid",
         "2024", "17.50", "No.", "ABC", "item", "delivery", "phone", "email", "station", "open")
#: rec's ground truth: the lowercase / digit words only
REC_WORDS = tuple(w for w in WORDS if w == w.lower())
#: det: probability threshold, smallest box kept (pixels), IoU for a match
DET_THRESHOLD, DET_MIN_AREA, DET_IOU = 0.3, 4, 0.5
REC_WIDTH = 320
Metric = Callable[[dict[str, np.ndarray]], float]
Box = tuple[int, int, int, int]


def _font(size: int) -> Any:
    from PIL import ImageFont
    for path in sorted(Path("/usr/share/fonts").rglob("*.ttf")) if Path("/usr/share/fonts").is_dir() else []:
        if "Sans" in path.name and "Bold" not in path.name and "Italic" not in path.name:
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def text_line(rng: np.random.Generator, words: tuple[str, ...] = WORDS, most: int = 4) -> tuple[Any, str]:
    """One text line of 1..``most`` random words, tightly cropped with a margin, dark on a light
    background (grey L image), and the text drawn."""
    from PIL import Image, ImageDraw
    text = " ".join(rng.choice(words, size=int(rng.integers(1, most + 1))))
    font = _font(int(rng.integers(18, 34)))
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    pad = int(rng.integers(2, 8))
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), int(rng.integers(200, 256)))
    ImageDraw.Draw(img).text((pad - left, pad - top), text, fill=int(rng.integers(0, 60)), font=font)
    return img, text


def _line_tensor(img: Any, width: int) -> np.ndarray:
    """PaddleOCR's cls/rec preprocessing: height 48, width up to ``width`` keeping the ratio,
    (x/255 - 0.5) / 0.5, right side zero-padded: [3, 48, width]."""
    from PIL import Image
    img = img.convert("RGB")
    resized = min(width, max(1, int(np.ceil(48 * img.width / img.height))))
    x = (np.asarray(img.resize((resized, 48), Image.BILINEAR), np.float32) / 255 - 0.5) / 0.5
    chw = np.zeros((3, 48, width), np.float32)
    chw[:, :, :resized] = x.transpose(2, 0, 1)
    return chw


def cls_calibration(n: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` rendered text lines at 48x192, then the same lines rotated by 180 degrees: [2n, 3, 48, 192]."""
    rng = np.random.default_rng(seed)
    upright = np.stack([_line_tensor(text_line(rng)[0], 192) for _ in range(n)])
    return np.concatenate([upright, upright[:, :, ::-1, ::-1]]).astype(np.float32)


def det_calibration(n: int = 32, size: int = 320, seed: int = 1) -> np.ndarray:
    """``n`` size x size RGB pages with 3-7 text lines each, ImageNet mean/std: [n, 3, H, W]."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    out = []
    for _ in range(n):
        page = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(190, 256, 3)))
        for _ in range(int(rng.integers(3, 8))):
            line = text_line(rng)[0]
            if line.width > size:
                line = line.crop((0, 0, size, line.height))
            x, y = int(rng.integers(0, size - line.width + 1)), int(rng.integers(0, size - line.height + 1))
            page.paste(line.convert("RGB"), (x, y))
        x = np.asarray(page, np.float32) / 255
        out.append(((x - mean) / std).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def rec_calibration(n: int = 64, seed: int = 3) -> tuple[np.ndarray, list[str]]:
    """``n`` rendered lines of 1-3 lowercase/digit words at 48 x ``REC_WIDTH`` (lines wider than that
    are squeezed, as PaddleOCR does) and their texts: ([n, 3, 48, W], strings)."""
    rng = np.random.default_rng(seed)
    lines = [text_line(rng, REC_WORDS, most=3) for _ in range(n)]
    return np.stack([_line_tensor(img, REC_WIDTH) for img, _ in lines]), [text for _, text in lines]


# -- det: box F1 ---------------------------------------------------------------------------------

def boxes(prob: np.ndarray) -> list[Box]:
    """Bounding boxes (x0, y0, x1, y1) of the connected regions of one [H, W] probability map above
    ``DET_THRESHOLD``, the ones under ``DET_MIN_AREA`` pixels dropped."""
    from scipy import ndimage
    labels, _ = ndimage.label(prob > DET_THRESHOLD)
    found = [(s[1].start, s[0].start, s[1].stop, s[0].stop) for s in ndimage.find_objects(labels) if s]
    return [b for b in found if (b[2] - b[0]) * (b[3] - b[1]) >= DET_MIN_AREA]


def _iou(a: Box, b: Box) -> float:
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0, w) * max(0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def matched(found: list[Box], reference: list[Box]) -> int:
    """Greedy one-to-one matching at IoU >= ``DET_IOU``, best pairs first: how many matched."""
    pairs = sorted(((_iou(f, r), i, j) for i, f in enumerate(found) for j, r in enumerate(reference)),
                   reverse=True)
    used_f, used_r = set(), set()
    for iou, i, j in pairs:
        if iou < DET_IOU:
            break
        if i not in used_f and j not in used_r:
            used_f.add(i)
            used_r.add(j)
    return len(used_f)


def box_f1(maps: np.ndarray, reference: list[list[Box]]) -> float:
    """F1 = 2PR / (P + R) of every sample's boxes against ``reference`` (per sample, in order)."""
    found = [boxes(m[0]) for m in maps]
    hits = sum(matched(f, r) for f, r in zip(found, reference))
    n_found, n_ref = sum(map(len, found)), sum(map(len, reference))
    if not n_found or not n_ref:
        return float(n_found == n_ref)
    p, r = hits / n_found, hits / n_ref
    return 2 * p * r / (p + r) if p + r else 0.0


def det_metric(model: Path, pages: np.ndarray) -> tuple[Metric, int]:
    """The box-F1 metric against the fp32 model's boxes on ``pages`` (each run at batch 1, as the
    gates run it: the original then scores 1.0), and how many reference boxes there are."""
    engine = dk.load(str(model), "onnxruntime", threads=1)
    name = engine.outputs[0].name
    reference = [boxes(engine.run({engine.inputs[0].name: page[None]})[name][0, 0]) for page in pages]
    engine.close()
    return (lambda out: box_f1(out[name], reference)), sum(map(len, reference))


# -- rec: character error rate -------------------------------------------------------------------

def characters(model: Path) -> list[str]:
    """The model's dictionary (PP-OCRv4 rec: metadata ``character``, one a line) plus the space
    PaddleOCR appends; output index i + 1 is character i, index 0 the CTC blank."""
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    if "character" not in meta:
        raise SystemExit(f"{model}: no 'character' metadata; cannot decode its output")
    return [*meta["character"].split("\n"), " "]


def ctc_decode(probs: np.ndarray, chars: list[str]) -> str:
    """Greedy CTC over one [T, classes] output: argmax, repeats collapsed, blanks (0) dropped."""
    best = probs.argmax(-1)
    keep = (best != 0) & np.r_[True, best[1:] != best[:-1]]
    return "".join(chars[i - 1] for i in best[keep] if i - 1 < len(chars)).strip()


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def cer(decoded: list[str], truth: list[str]) -> float:
    """Character error rate: edit distance over the ground-truth length, all lines together."""
    return sum(levenshtein(d, t) for d, t in zip(decoded, truth)) / max(1, sum(map(len, truth)))


def rec_metric(model: Path, truth: list[str]) -> Metric:
    """1 - CER of the greedy-decoded output against ``truth`` (higher is better, as the gates want)."""
    chars = characters(model)

    def metric(out: dict[str, np.ndarray]) -> float:
        probs = next(iter(out.values()))
        return 1.0 - cer([ctc_decode(p, chars) for p in probs], truth)

    return metric
