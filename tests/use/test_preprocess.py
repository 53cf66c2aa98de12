"""Preprocessing on synthetic drawings: every form of the same digit gives the same input."""

import numpy as np
import pytest
from PIL import Image

from seqmnist.use.preprocess import load_image, prepare_image


def drawing(height=120, width=90) -> np.ndarray:
    """A light '7'-like stroke figure on black, uint8 (H, W), away from the centre."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    canvas[20:30, 15:75] = 255  # the bar
    for row in range(30, 110):  # the diagonal
        column = 70 - (row - 30) // 2
        canvas[row, column - 5 : column + 5] = 255
    return canvas


def mass_centre(image: np.ndarray) -> np.ndarray:
    rows, columns = np.indices(image.shape)
    return np.array([(rows * image).sum(), (columns * image).sum()]) / image.sum()


def test_output_is_mnist_like():
    prepared = prepare_image(drawing())
    assert prepared.shape == (28, 28) and prepared.dtype == np.float32
    assert prepared.min() == 0.0 and prepared.max() == pytest.approx(1.0)
    rows = np.flatnonzero(prepared.any(axis=1))
    columns = np.flatnonzero(prepared.any(axis=0))
    assert rows[-1] - rows[0] + 1 == 20  # the taller side fills the 20-pixel box
    assert columns[-1] - columns[0] + 1 <= 20
    np.testing.assert_allclose(mass_centre(prepared), (14, 14), atol=0.6)
    assert (prepared[:, :2] == 0).all() and (prepared[:2] == 0).all()  # a margin all round


@pytest.mark.parametrize(
    "variant",
    [
        "dark_on_light",
        "rgb",
        "rgba_dark_strokes",
        "rgba_light_strokes",
        "uint16",
        "float",
        "palette",
    ],
)
def test_every_form_of_a_drawing_gives_the_same_input(variant):
    light = drawing()
    reference = prepare_image(light)
    ink = light.astype(np.float32) / 255
    if variant == "dark_on_light":
        image = Image.fromarray(255 - light)
    elif variant == "rgb":  # blue ink on cream paper
        paper, pen = np.array([250, 240, 215]), np.array([20, 30, 120])
        image = Image.fromarray(
            (paper * (1 - ink[..., None]) + pen * ink[..., None]).astype(np.uint8)
        )
    elif variant.startswith("rgba"):
        tone = 0 if variant == "rgba_dark_strokes" else 255
        rgba = np.full((*light.shape, 4), tone, dtype=np.uint8)
        rgba[..., 3] = light  # strokes opaque, background transparent
        image = Image.fromarray(rgba, "RGBA")
    elif variant == "uint16":
        image = Image.fromarray((255 - light).astype(np.uint16) * 257)  # I;16
    elif variant == "float":
        image = ink  # an array in [0, 1]
    else:
        image = Image.fromarray(255 - light).convert("P")
    np.testing.assert_allclose(prepare_image(image), reference, atol=0.02)


def test_files_of_every_format_decode_alike(tmp_path):
    reference = prepare_image(drawing())
    for name in ("d.png", "d.jpg", "d.bmp", "d.gif", "d.webp"):
        Image.fromarray(255 - drawing()).save(tmp_path / name)
        # JPEG and WebP are lossy: a few grey levels of difference along the edges.
        assert np.abs(load_image(tmp_path / name) - reference).mean() < 0.01, name


def test_other_image_shapes_scale_in_proportion():
    prepared = prepare_image(drawing(), image_shape=(14, 21))
    assert prepared.shape == (14, 21)
    rows = np.flatnonzero(prepared.any(axis=1))
    assert rows[-1] - rows[0] + 1 == 10  # 20/28 of 14
    np.testing.assert_allclose(mass_centre(prepared), (7, 10.5), atol=0.6)


def test_a_thin_stroke_keeps_at_least_one_pixel():
    canvas = np.zeros((400, 60), dtype=np.uint8)
    canvas[20:380, 29:31] = 255  # a '1' two pixels wide, 360 tall
    prepared = prepare_image(canvas)
    assert prepared.any(axis=0).sum() >= 1
    assert prepared.max() == pytest.approx(1.0)  # shrunk ink is brought back to full strength


def test_photo_like_noise_and_grey_paper_are_not_ink():
    rng = np.random.default_rng(0)
    ink = drawing().astype(np.float32) / 255
    photo = 170 - 110 * ink + rng.normal(0, 6, ink.shape)  # grey paper, dark grey pen, noise
    prepared = prepare_image(np.clip(photo, 0, 255).astype(np.uint8))
    np.testing.assert_allclose(prepared, prepare_image(drawing()), atol=0.25)
    assert np.abs(prepared - prepare_image(drawing())).mean() < 0.02


def test_a_sheet_lit_unevenly_is_still_paper():
    ink = drawing().astype(np.float32) / 255
    light = np.linspace(250, 110, ink.shape[1])[None, :]  # one side of the sheet in shadow
    photo = light * (0.85 - 0.7 * ink)  # paper reflects 85% of the light, ink 15%
    prepared = prepare_image(photo.astype(np.uint8))
    assert np.abs(prepared - prepare_image(drawing())).mean() < 0.02
