"""A model trained on the real MNIST reads test digits redrawn the ways people make images."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from seqmnist import Predictor
from seqmnist.cli import main
from seqmnist.data import load_dataset


def inverted(digit):  # dark ink on white paper, as drawn
    return Image.fromarray(255 - digit)


def three_times_larger(digit):
    return Image.fromarray(digit).resize((84, 84), Image.Resampling.BICUBIC)


def off_centre(digit):  # a small digit near the corner of a large sheet
    sheet = np.full((160, 120), 255, dtype=np.uint8)
    sheet[10:38, 85:113] = 255 - digit
    return Image.fromarray(sheet)


def rgb(digit):  # blue pen on cream paper
    ink = digit[..., None] / 255.0
    paper, pen = np.array([250, 240, 215]), np.array([25, 35, 130])
    return Image.fromarray((paper * (1 - ink) + pen * ink).astype(np.uint8))


def rgba_transparent(digit):  # black strokes on a transparent background
    rgba = np.zeros((*digit.shape, 4), dtype=np.uint8)
    rgba[..., 3] = digit
    return Image.fromarray(rgba, "RGBA")


def jpeg(digit):  # dark on light, twice the size, saved at JPEG quality 50
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((56, 56), Image.Resampling.BICUBIC).save(
        buffer, format="JPEG", quality=50
    )
    return Image.open(io.BytesIO(buffer.getvalue()))


VARIANTS = [inverted, three_times_larger, off_centre, rgb, rgba_transparent, jpeg]


@pytest.fixture(scope="module")
def chosen_digits(mnist_run, mnist_dir):
    """Up to 40 test digits (4 of each class) that the model gets right as they are."""
    images, labels = load_dataset("mnist", mnist_dir).split("test")
    predictor = Predictor.from_run(mnist_run)
    first = np.concatenate([np.flatnonzero(labels[:2000] == label)[:6] for label in range(10)])
    predictions = predictor.classify(images[first].astype(np.float32) / 255, list(map(str, first)))
    right = [index for index, p in zip(first, predictions) if p.index == labels[index]]
    chosen = [
        index for label in range(10) for index in [i for i in right if labels[i] == label][:4]
    ]
    assert len(chosen) >= 36
    return images[chosen], labels[chosen]


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda variant: variant.__name__)
def test_redrawn_digits_keep_their_class(variant, chosen_digits, mnist_run, tmp_path):
    digits, labels = chosen_digits
    suffix = ".jpg" if variant is jpeg else ".png"
    paths = []
    for index, digit in enumerate(digits):
        image = variant(digit)
        paths.append(tmp_path / f"{index}{suffix}")
        image.save(paths[-1], format="JPEG" if suffix == ".jpg" else "PNG")
    predictions = Predictor.from_run(mnist_run).predict(paths)
    agree = np.mean([p.index == label for p, label in zip(predictions, labels)])
    assert agree >= 0.9, f"{variant.__name__}: {agree:.0%} of {len(labels)} agree"


@pytest.mark.slow
def test_predict_command_json_and_explain(mnist_run, chosen_digits, tmp_path, capsys):
    digits, labels = chosen_digits
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"digit{index}.png")
        inverted(digits[index]).save(paths[-1])
    assert main(["predict", str(mnist_run), *map(str, paths), "--json"]) == 0
    objects = json.loads(capsys.readouterr().out)
    assert [o["file"] for o in objects] == list(map(str, paths))
    for entry, label in zip(objects, labels):
        assert entry["digit"] == label
        assert len(entry["probabilities"]) == 10
        assert sum(entry["probabilities"]) == pytest.approx(1, abs=1e-5)

    assert main(["predict", str(mnist_run), str(paths[0]), "--explain",
                 "--explain-dir", str(tmp_path / "explain")]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith(f"{paths[0]}: {labels[0]}")
    assert len([line for line in text.splitlines() if line.strip()[:2].strip().isdigit()]) == 28
    picture = tmp_path / "explain" / "digit0.steps.png"
    with Image.open(picture) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 300
