"""A model.safetensors damaged after training is refused by every reader, never used."""

import json

import pytest
import torch
from support import tiny_config

from seqmnist.cli import main
from seqmnist.errors import NonFiniteOutputs, RunError
from seqmnist.evaluation import evaluate
from seqmnist.runs import WEIGHTS_FILE, load_run, read_weights, save_weights
from seqmnist.training import train


@pytest.fixture
def finished_run(stripes_dir, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(stripes_dir, steps=20), run_dir, progress=False)
    return run_dir


def damage_tensor_bytes(path):
    """Change one byte after the header: safetensors still parses it, the numbers differ."""
    data = bytearray(path.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    data[header_end + (len(data) - header_end) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_the_summary_records_the_weights_checksum(finished_run):
    import hashlib

    summary = json.loads((finished_run / "summary.json").read_text())
    digest = hashlib.sha256((finished_run / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert summary["checksums"] == {WEIGHTS_FILE: digest}


@pytest.mark.parametrize(
    "command",
    [["eval", "{run}"], ["export", "{run}", "--out", "{tmp}/model.onnx", "--check-images", "8"],
     ["predict", "{run}", "{image}"], ["plot", "{run}", "--out", "{tmp}/plots"]],
    ids=["eval", "export", "predict", "plot"],
)  # fmt: skip
def test_every_reader_refuses_damaged_weights_and_names_the_fix(
    finished_run, tmp_path, capsys, command
):
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.new("L", (6, 5), 0).save(image)
    damage_tensor_bytes(finished_run / WEIGHTS_FILE)
    argv = [part.format(run=finished_run, tmp=tmp_path, image=image) for part in command]
    assert main(argv) != 0
    line = one_error_line(capsys)
    assert f"{finished_run / WEIGHTS_FILE} is damaged" in line
    assert f"seqmnist train --resume {finished_run}" in line
    assert not (tmp_path / "model.onnx").exists()


def test_resume_rewrites_damaged_weights_from_the_last_checkpoint(finished_run, caplog):
    original = (finished_run / WEIGHTS_FILE).read_bytes()
    damage_tensor_bytes(finished_run / WEIGHTS_FILE)
    with pytest.raises(RunError, match="is damaged"):
        load_run(finished_run)
    assert main(["train", "--resume", str(finished_run), "--no-progress"]) == 0
    assert "resuming rewrites it" in caplog.text
    assert (finished_run / WEIGHTS_FILE).read_bytes() == original
    load_run(finished_run)


def test_without_checkpoints_the_fix_is_to_train_again(finished_run, capsys):
    for path in (finished_run / "checkpoints").iterdir():
        path.unlink()
    damage_tensor_bytes(finished_run / WEIGHTS_FILE)
    assert main(["eval", str(finished_run)]) != 0
    assert "--overwrite" in one_error_line(capsys)


def test_a_truncated_weights_file_names_the_fix(finished_run, capsys):
    path = finished_run / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:100])
    assert main(["eval", str(finished_run)]) != 0
    assert f"seqmnist train --resume {finished_run}" in one_error_line(capsys)


def test_non_finite_outputs_are_an_error_not_a_figure(finished_run, capsys):
    # Weights that are NaN yet carry a valid checksum: the outputs themselves must be caught.
    run = load_run(finished_run)
    state, info = read_weights(finished_run / WEIGHTS_FILE)
    with torch.no_grad():
        run.model.head.bias[0] = float("nan")
    summary_path = finished_run / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["checksums"][WEIGHTS_FILE] = save_weights(finished_run / WEIGHTS_FILE, run.model, info)
    summary_path.write_text(json.dumps(summary))
    assert main(["eval", str(finished_run)]) != 0
    assert "NaN or infinite" in one_error_line(capsys)
    with pytest.raises(NonFiniteOutputs, match="for 3 of the 3"):
        images = torch.zeros(3, 6, 5, dtype=torch.uint8)
        evaluate(run.model, images, torch.zeros(3, dtype=torch.long), split="test",
                 num_classes=3, batch_size=2)  # fmt: skip
