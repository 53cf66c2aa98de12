"""Bad images and bad runs: one line saying what is wrong, exit status 2, no traceback."""

import io
import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from seqmnist.cli import main


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid grayscale PNG of the given size whose pixels all compress away: a bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(1)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def animated_gif() -> bytes:
    frames = [Image.fromarray(np.full((28, 28), 40 * index, dtype=np.uint8)) for index in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


DIGIT = np.zeros((28, 28), dtype=np.uint8)
DIGIT[6:22, 12:16] = 255
NOISE = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)  # compresses badly

BAD_IMAGES = {
    "empty": (lambda: b"", "is empty"),
    "text": (lambda: b"this is a note, not a picture\n", "is not a PNG, JPEG, BMP, GIF or WebP"),
    "truncated": (lambda: png_bytes(NOISE)[:300], "damaged or truncated"),
    "bomb": (lambda: png_of_zeros(9000, 9000), "over the 50 MP limit"),
    "huge_bomb": (lambda: png_of_zeros(20000, 20000), "claims 400 MP, over the 50 MP limit"),
    "strip": (lambda: png_bytes(np.zeros((1, 10000), dtype=np.uint8)), "too small or too thin"),
    "animated": (animated_gif, "is animated (3 frames)"),
    "blank": (lambda: png_bytes(np.full((28, 28), 255, dtype=np.uint8)), "no visible ink"),
    "tiff": (lambda: _tiff(), "is not a PNG, JPEG, BMP, GIF or WebP"),
}


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(DIGIT).save(buffer, format="TIFF")
    return buffer.getvalue()


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
