"""Image preprocessing in C: one pass from a uint8 image to a model's input tensor.

    tensor, transform = dk.preprocess.letterbox(frame, 640)            # YOLO-style, cv2-exact
    tensor = dk.preprocess.resize_crop(photo, 256, 224, mean=..., std=...)  # classifier, PIL rule
    tensor = dk.preprocess.resize(frame, 224)                           # exact size, cv2-exact

See docs/preprocess.md.
``reference`` holds the pure-NumPy twins that are the test oracle.
"""

from .batching import batch
from .checks import MAX_OUTPUT_BYTES
from .ops import OPS, LetterboxTransform, letterbox, resize, resize_crop
from .pipeline import Pipeline

__all__ = ["MAX_OUTPUT_BYTES", "OPS", "LetterboxTransform", "Pipeline", "batch", "letterbox", "resize",
           "resize_crop"]
