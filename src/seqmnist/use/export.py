"""Export a trained model to ONNX, and prove the file computes what PyTorch computes.

The graph takes ``images``: float32 (batch, height, width), pixels in [0, 1]
(IDX images scaled by 1/255), and returns ``logits``: (batch, classes). The
sequence view is the model's first layer, so it is inside the graph.

It uses PyTorch's TorchScript exporter (``dynamo=False``): it writes each
recurrent layer as one ONNX LSTM/GRU/RNN node with a free batch axis. The
newer torch.export-based exporter unrolls the recurrence into one set of nodes
per time step (about 700 nodes for a small 28-step model, 10-30 s each export
here) and did not finish a 784-step pixel model in minutes (torch 2.13).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqmnist.errors import ExportError
from seqmnist.files import atomic_write, check_writable_file, make_folder
from seqmnist.model import RecurrentClassifier
from seqmnist.model.inputs import to_unit_float_array
from seqmnist.runs import ModelInfo, load_run, run_split
from seqmnist.version import package_version

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
# Opset 17 has every node this graph uses and runs on onnxruntime 1.13 and later.
OPSET = 17
BATCH_SIZES = (1, 7, 64)
# Max difference of an image's logits, relative to its largest |logit| where that is
# above 1 (absolute below): float32 kernels differ in rounding by a share of the values
# they compute, so a trained minGRU (logits near 20) differed by 1.1e-5 absolute,
# 7e-7 relative.
TOLERANCE = 1e-5


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_diff: dict[int, float]  # per batch size, relative as TOLERANCE says
    images: int
    size_bytes: int

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())


def export_onnx(
    model: RecurrentClassifier,
    info: ModelInfo,
    path: Path | str,
    check_images: np.ndarray,
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    tolerance: float = TOLERANCE,
) -> ExportReport:
    """Write ``model`` to ``path`` as ONNX once onnxruntime agrees with PyTorch on ``check_images``.

    ``check_images`` are float32 (N, H, W) in [0, 1]. The file appears whole or
    not at all: a failed check leaves nothing behind. A place that cannot be
    written is a StorageError naming ``--out``.
    """
    check_exportable(model)
    onnx, onnxruntime = _import_onnx()
    model = model.cpu().eval()
    path = Path(path)
    make_folder(path.parent)
    check_images = np.ascontiguousarray(check_images, dtype=np.float32)
    differences: dict[int, float] = {}

    def write(temp: Path) -> None:
        _trace_to_onnx(model, info, temp)
        graph = onnx.load(str(temp))
        onnx.helper.set_model_props(graph, _metadata(model, info))
        onnx.checker.check_model(graph)
        onnx.save(graph, str(temp))
        session = onnxruntime.InferenceSession(str(temp), providers=["CPUExecutionProvider"])
        for batch_size in batch_sizes:
            differences[batch_size] = _max_difference(session, model, check_images, batch_size)
        worst = max(differences.values())
        if worst > tolerance:
            raise ExportError(
                f"the ONNX model's logits differ from PyTorch's by up to {worst:.2e} of the "
                f"largest logit (more than {tolerance:.0e}) on {len(check_images)} images; "
                "no file was written"
            )

    atomic_write(path, write)
    return ExportReport(path, differences, len(check_images), path.stat().st_size)


def check_exportable(model: RecurrentClassifier) -> None:
    """Refuse, before any work, a model with a core the ONNX exporter cannot trace."""
    stuck = [type(layer).__name__ for layer in model.layers if not layer.exportable]
    if stuck:
        raise ExportError(
            f"a {model.cell} model cannot be exported to ONNX yet ({', '.join(sorted(set(stuck)))} "
            "does not trace to a graph onnxruntime matches); use it from PyTorch instead "
            "(`seqmnist predict`, or seqmnist.Predictor in Python)"
        )


def _import_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise ExportError(
            f"export needs the onnx and onnxruntime packages ({error}); "
            "install them with: pip install 'seqmnist[onnx]'"
        ) from None
    return onnx, onnxruntime


def _trace_to_onnx(model: RecurrentClassifier, info: ModelInfo, path: Path) -> None:
    example = torch.zeros(2, *info.image_shape)  # (B, H, W); B is left free below
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter announces its own deprecation, and warns that a batch size
        # other than the traced one may fail with LSTMs, and that shapes met while
        # tracing become constants; the check runs batch sizes 1, 7 and 64 through
        # onnxruntime instead of trusting any of it.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )  # fmt: skip


def _metadata(model: RecurrentClassifier, info: ModelInfo) -> dict[str, str]:
    return {
        "seqmnist_version": package_version(),
        "class_names": json.dumps(list(info.class_names)),
        "image_shape": json.dumps(list(info.image_shape)),
        "input": "float32 (batch, height, width): pixels / 255",
        "view": model.view.kind,
    }


@torch.inference_mode()
def _max_difference(
    session, model: RecurrentClassifier, images: np.ndarray, batch_size: int
) -> float:
    worst = 0.0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]  # (B, H, W)
        (ours,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})  # (B, C)
        reference = model(torch.from_numpy(batch)).numpy()  # (B, C)
        if ours.shape != reference.shape:
            raise ExportError(f"the ONNX model returned shape {ours.shape}, not {reference.shape}")
        # Per image: one confident image must not loosen the check for the others.
        scale = np.maximum(1.0, np.abs(reference).max(axis=1, keepdims=True))  # (B, 1)
        difference = float((np.abs(ours - reference) / scale).max())
        # max() would drop a NaN; a NaN is the worst difference there is.
        worst = max(worst, difference if np.isfinite(difference) else float("inf"))
    return worst


def export_run(
    run_dir: Path | str, path: Path | str, *, data_dir: str | None = None, check_images: int = 1000
) -> ExportReport:
    """Export a run's model, checked on the first ``check_images`` images of its test split."""
    if check_images < 1:
        raise ExportError(f"--check-images must be at least 1, got {check_images}")
    run = load_run(run_dir)
    check_exportable(run.model)
    check_writable_file(Path(path))  # before the dataset is read and the model traced
    test = run_split(run, "test", data_dir)
    pixels = to_unit_float_array(test.images[:check_images])  # (N, H, W) in [0, 1]
    return export_onnx(run.model, run.info, path, pixels)
