"""Every registered family trains, resumes bit-exactly, evaluates as it reported, and exports or refuses."""

import numpy as np
import pytest
from support import records, sha256, tiny_config

from seqmnist.api import evaluate_run
from seqmnist.config import CELLS
from seqmnist.errors import ExportError
from seqmnist.runs import load_run
from seqmnist.training import train
from seqmnist.use.export import export_onnx


class Crash(Exception):
    pass


def crash_at(step):
    def callback(record):
        if record["step"] == step:
            raise Crash

    return callback


@pytest.mark.parametrize("cell", CELLS)
def test_trains_resumes_exactly_and_eval_reproduces_it(
    cell, stripes_dir, tmp_path, one_torch_thread
):
    config = tiny_config(stripes_dir, cell=cell, steps=12, dropout=0.2)
    whole = train(config, tmp_path / "whole", progress=False)
    with pytest.raises(Crash):
        train(config, tmp_path / "parts", progress=False, callbacks=(crash_at(10),))
    train(config, tmp_path / "parts", progress=False, resume=True)
    assert sha256(tmp_path / "parts/model.safetensors") == sha256(
        tmp_path / "whole/model.safetensors"
    )
    assert records(tmp_path / "parts") == records(tmp_path / "whole")
    test = evaluate_run(tmp_path / "whole")
    assert (test.accuracy, test.loss) == (
        whole.summary["test_accuracy"],
        whole.summary["test_loss"],
    )


@pytest.mark.parametrize("cell", CELLS)
def test_exports_to_onnx_matching_pytorch_or_refuses_in_one_line(cell, untrained_run, tmp_path):
    run = load_run(untrained_run(cell=cell, image_shape=(6, 5), classes=3))
    images = np.random.default_rng(0).random((16, 6, 5), dtype=np.float32)
    out = tmp_path / "model.onnx"
    if all(layer.exportable for layer in run.model.layers):
        report = export_onnx(run.model, run.info, out, images)
        assert report.worst <= 1e-5 and out.exists()
    else:
        with pytest.raises(ExportError, match="cannot be exported to ONNX yet.*seqmnist predict"):
            export_onnx(run.model, run.info, out, images)
        assert not out.exists()
