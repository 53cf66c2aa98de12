"""Bad images and bad runs: one line saying what is wrong, exit status 2, no traceback."""

import json
import struct
import subprocess
import sys
import zlib

import pytest
from bad_images import BAD_IMAGES, DIGIT, png_bytes

from seqmnist.cli import main


@pytest.fixture
def one_line_error(capsys):
    """Run the CLI; assert exit 2 and exactly one error line; return that line."""

    def run(argv: list[str]) -> str:
        assert main(argv) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("seqmnist: error: ")
        return lines[0]

    return run


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_bad_images_get_one_line_each(kind, untrained_run, tmp_path, one_line_error, capsys):
    make, complaint = BAD_IMAGES[kind]
    path = tmp_path / f"{kind}.png"
    path.write_bytes(make())
    line = one_line_error(["predict", str(untrained_run()), str(path)])
    assert complaint in line and str(path) in line


def test_missing_and_folder_images(untrained_run, tmp_path, one_line_error):
    run_dir = str(untrained_run())
    assert "does not exist" in one_line_error(["predict", run_dir, str(tmp_path / "no.png")])
    assert "is a folder" in one_line_error(["predict", run_dir, str(tmp_path)])


def test_good_images_are_still_classified_beside_bad_ones(untrained_run, tmp_path, capsys):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(png_bytes(DIGIT))
    bad.write_bytes(b"")
    assert main(["predict", str(untrained_run()), str(good), str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    assert [entry["file"] for entry in json.loads(captured.out)] == [str(good)]
    assert captured.err.count("\n") == 1 and "bad.png is empty" in captured.err


@pytest.mark.parametrize("command", ["predict", "export", "plot", "compare"])
def test_a_missing_run_directory(command, tmp_path, one_line_error):
    argv = [command, str(tmp_path / "no-run")] + (["image.png"] if command == "predict" else [])
    assert "does not exist" in one_line_error(argv)


@pytest.mark.parametrize("command", ["predict", "export", "plot", "compare"])
def test_a_run_whose_weights_do_not_match_its_config(
    command, untrained_run, tmp_path, one_line_error
):
    run_dir = untrained_run(hidden_sizes=(8,))
    other = untrained_run("other", hidden_sizes=(16,))
    (run_dir / "config.json").write_text((other / "config.json").read_text())
    image = tmp_path / "digit.png"
    image.write_bytes(png_bytes(DIGIT))
    argv = [command, str(run_dir)] + ([str(image)] if command == "predict" else [])
    assert "does not match" in one_line_error(argv)


def test_the_installed_command_prints_no_traceback(untrained_run, tmp_path):
    path = tmp_path / "note.png"
    path.write_text("not an image")
    process = subprocess.run(
        [sys.executable, "-m", "seqmnist", "predict", str(untrained_run()), str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        f"seqmnist: error: {path} is not a PNG, JPEG, BMP, GIF or WebP image"
    ]


def png_header(width: int, height: int) -> bytes:
    """A grayscale PNG's header claiming ``width`` x ``height``, with no pixel data at all.

    Pillow reads chunks up to the first IDAT to open a PNG, so an empty one ends it.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height, size", [(20000, 20000, 400), (60000, 10000, 600)])
def test_a_huge_bomb_is_refused_with_its_own_size(
    width, height, size, untrained_run, tmp_path, one_line_error
):
    path = tmp_path / "claims.png"
    path.write_bytes(png_header(width, height))
    line = one_line_error(["predict", str(untrained_run()), str(path)])
    # The image's own size and seqmnist's limit, not Pillow's bomb threshold (179 MP).
    assert f"{path} claims {size} MP, over the 50 MP limit" in line
    assert "179" not in line
