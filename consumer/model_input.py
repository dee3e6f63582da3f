"""The model's input, the one contract between decoding and inference: square RGB uint8 images
of `INPUT_SIZE` pixels a side, batched as N x `INPUT_SHAPE`.

Images are decoded to it (`consumer/images/`), backends accept it (`consumer/model/`); neither
package imports the other, so the size is stated here, once.
"""

from __future__ import annotations

INPUT_SIZE = 224
CHANNELS = 3
INPUT_SHAPE: tuple[int, int, int] = (INPUT_SIZE, INPUT_SIZE, CHANNELS)
