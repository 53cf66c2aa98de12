"""ONNX export: onnxruntime agrees with PyTorch for every cell, stacked and bidirectional."""

import json

import numpy as np
import pytest
import torch

from seqmnist.config import ModelConfig
from seqmnist.errors import ExportError
from seqmnist.model import RecurrentClassifier
from seqmnist.runs import ModelInfo
from seqmnist.use.export import TOLERANCE, export_onnx

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

INFO = ModelInfo((28, 28), tuple(map(str, range(10))))
MODELS = {
    "rnn": dict(cell="rnn", hidden_sizes=(16,)),
    "lstm": dict(cell="lstm", hidden_sizes=(16,)),
    "gru": dict(cell="gru", hidden_sizes=(16,)),
    "bidirectional-lstm-stack-columns": dict(
        cell="lstm", hidden_sizes=(12, 16), bidirectional=True, view="columns"
    ),
    "bidirectional-gru-stack-mean": dict(
        cell="gru", hidden_sizes=(8, 8), bidirectional=True, readout="mean"
    ),
    "rnn-permuted-pixels": dict(cell="rnn", hidden_sizes=(8,), view="permuted", permutation_seed=3),
}


def images(count: int) -> np.ndarray:
    return np.random.default_rng(0).random((count, *INFO.image_shape), dtype=np.float32)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    model = RecurrentClassifier(ModelConfig(**MODELS[name]), INFO.image_shape, INFO.num_classes)
    count = 200 if "pixels" in name else 1000  # 784 steps each: fewer keeps it quick
    report = export_onnx(model.eval(), INFO, tmp_path / "model.onnx", images(count))
    assert set(report.max_abs_diff) == {1, 7, 64}
    assert report.worst <= TOLERANCE

    graph = onnx.load(str(report.path))
    (graph_input,), (graph_output,) = graph.graph.input, graph.graph.output
    assert graph_input.name == "images" and graph_output.name == "logits"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    input_dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert input_dims == ["batch", 28, 28]
    metadata = {entry.key: entry.value for entry in graph.metadata_props}
    assert json.loads(metadata["class_names"]) == list(INFO.class_names)
    # One ONNX node per recurrent layer, not a copy of the cell per time step.
    assert len(graph.graph.node) < 100


def test_onnxruntime_alone_runs_the_file(tmp_path):
    torch.manual_seed(0)
    model = RecurrentClassifier(ModelConfig(hidden_sizes=(8,)), INFO.image_shape, 10).eval()
    path = export_onnx(model, INFO, tmp_path / "m.onnx", images(64)).path
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": images(5)})
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(
        logits, model(torch.from_numpy(images(5))).detach().numpy(), atol=1e-5
    )


def test_a_failed_check_leaves_no_file(tmp_path):
    model = RecurrentClassifier(ModelConfig(hidden_sizes=(4,)), INFO.image_shape, 10).eval()
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError, match="no file was written"):
        export_onnx(model, INFO, target, images(8), tolerance=-1.0)  # nothing can pass
    assert list(target.parent.iterdir()) == []  # neither the file nor a temporary


def test_export_command_on_a_run_of_other_image_sizes(stripes_dir, tmp_path, capsys):
    from seqmnist.api import make_config, train
    from seqmnist.cli import main

    config = make_config("default", dataset=str(stripes_dir), validation_size=100,
                         cell="gru", hidden_sizes="8,8", bidirectional=True, steps=20,
                         device="cpu")  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m.onnx")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {tmp_path / 'm.onnx'}")
    assert "on 150 test images" in lines[1]  # the folder dataset has 150
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    (logits,) = session.run(["logits"], {"images": np.zeros((3, 6, 5), dtype=np.float32)})
    assert logits.shape == (3, 3)


def test_the_check_scales_each_images_difference_by_its_own_largest_logit():
    from seqmnist.use.export import _max_difference

    reference = np.array([[100.0, 0.0], [0.5, 0.0]], dtype=np.float32)  # confident, then not
    ours = reference + np.array([[5e-4, 0.0], [5e-5, 0.0]], dtype=np.float32)

    class Session:
        def run(self, names, feeds):
            return [ours[: len(feeds["images"])]]

    def model(batch):
        return torch.from_numpy(reference[: len(batch)])

    worst = _max_difference(Session(), model, np.zeros((2, 1, 1), np.float32), batch_size=2)
    # The confident image is within 5e-6 of its logits; the other is off by 5e-5 absolute,
    # which a scale taken over the whole batch (100) would shrink to 5e-7.
    assert worst == pytest.approx(5e-5, rel=1e-2)
