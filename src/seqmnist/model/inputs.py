"""The image contract: what every model input is, whichever entry point made it.

A model reads float32 images (batch, height, width) with pixels in [0, 1]:
light ink (1) on a dark background (0), the digit centred as in MNIST. The
IDX datasets store uint8 pixels, so training, evaluation, bench and the
ONNX check scale them by 1/255 here; predict and serve make the same kind of
image from people's pictures (use/preprocess.py); the exported ONNX graph
takes it as its ``images`` input. The sequence view inside the model turns
it into steps, so no entry point reshapes images itself.
"""

from __future__ import annotations

import numpy as np
import torch

PIXEL_MAX = 255.0  # uint8 IDX pixels -> [0, 1]


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (N, H, W) to the float32 model input in [0, 1]."""
    return images.float().div_(PIXEL_MAX)


def to_unit_float_array(images: np.ndarray) -> np.ndarray:
    """The numpy twin of ``to_unit_float``, for onnxruntime and other numpy consumers."""
    return images.astype(np.float32) / np.float32(PIXEL_MAX)
