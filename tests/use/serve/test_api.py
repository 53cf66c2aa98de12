"""The served API through an ASGI client: every route, every error status, real digits."""

import io
import json
import math

import numpy as np
import pytest
import torch
from bad_images import BAD_IMAGES, DIGIT, png_bytes
from PIL import Image

from seqmnist import Predictor
from seqmnist.data import load_dataset
from seqmnist.errors import ConfigError
from seqmnist.use.serve import create_app, schemas

PNG = {"content-type": "image/png"}
# Why each bad image is refused, as an HTTP status: 400 for bytes that are no
# image file, 422 for a picture that decodes but cannot hold a digit.
BAD_IMAGE_STATUS = {
    "empty": 400, "text": 400, "truncated": 400, "tiff": 400, "garbled_exif": 400,
    "bomb": 422, "huge_bomb": 422, "strip": 422, "animated": 422, "blank": 422,
}  # fmt: skip


def drawn(digit: np.ndarray) -> bytes:
    """An MNIST digit as a person would send it: a PNG of dark ink on white."""
    return png_bytes(255 - digit)


def assert_error(response, status: int, words: str = "") -> str:
    """A JSON error of ``status`` holding nothing but a one-line ``detail``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str)
    assert "\n" not in body["detail"] and "Traceback" not in body["detail"]
    assert words in body["detail"]
    return body["detail"]


@pytest.fixture
def two_runs(untrained_run, serve):
    return serve([untrained_run("first"), untrained_run("second", cell="gru")])


def test_health_runs_and_schema(two_runs, untrained_run):
    assert two_runs.get("/healthz").json() == {"status": "ok", "runs": 2}
    runs = two_runs.get("/api/runs").json()
    schemas.Runs.model_validate(runs)
    first, second = runs["runs"]
    assert (first["name"], first["cell"], second["name"], second["cell"]) == (
        "first", "lstm", "second", "gru",
    )  # fmt: skip
    assert first["steps"] == 28 and first["step_name"] == "row"
    assert first["test_accuracy"] is None  # these runs were never evaluated
    paths = two_runs.get("/openapi.json").json()["paths"]
    assert {"/api/predict", "/api/runs", "/healthz"} <= set(paths)
    assert set(paths["/api/predict"]["post"]["requestBody"]["content"]) >= {
        "image/png", "multipart/form-data", "application/json",
    }  # fmt: skip
    # Swagger UI would fetch its scripts from a CDN: offline it would be a blank page.
    assert two_runs.get("/docs").status_code == 404


def test_page_and_its_files_are_served(two_runs):
    page = two_runs.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<canvas" in page.text
    for name in ("app.js", "style.css"):
        # Relative links: the page also works when the app is mounted under a prefix.
        assert f'"static/{name}"' in page.text
        assert two_runs.get(f"/static/{name}").status_code == 200
    # Nothing the page loads comes from another host: it must work offline.
    assert "http://" not in page.text and "https://" not in page.text
    # No request names a file outside the packaged page.
    assert two_runs.get("/static/../app.py").status_code == 404
    assert two_runs.get("/static/%2e%2e/app.py").status_code == 404


@pytest.mark.parametrize("way", ["raw", "multipart", "pixels"])
def test_every_way_in_gives_the_same_answer(two_runs, way):
    image = Image.fromarray(255 - DIGIT).resize((56, 56))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    prepared = Predictor.from_run(two_runs.app.state.runs["first"].predictor.run.directory)
    expected = prepared.predict([image])[0]
    if way == "raw":
        response = two_runs.post("/api/predict", content=buffer.getvalue(), headers=PNG)
    elif way == "multipart":
        files = {"file": ("five.png", buffer.getvalue(), "image/png")}
        response = two_runs.post("/api/predict", files=files)
    else:
        response = two_runs.post("/api/predict", json={"pixels": expected.image.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    schemas.Prediction.model_validate(body)
    assert body["run"] == "first" and body["label"] == expected.label
    np.testing.assert_allclose(body["probabilities"], expected.probabilities, atol=1e-6)
    np.testing.assert_allclose(body["image"], expected.image, atol=5e-4)  # 3 decimals
    assert [entry["label"] for entry in body["top"]] == [name for name, _ in expected.top()]
    assert "steps" not in body


def test_steps_follow_the_reading(two_runs):
    response = two_runs.post("/api/predict?run=second&steps=true", content=png_bytes(DIGIT),
                             headers=PNG)  # fmt: skip
    body = response.json()
    steps = body["steps"]
    assert body["run"] == "second"
    assert steps["steps"] == list(range(1, 29)) and steps["step_name"] == "row"
    probabilities = np.array(steps["probabilities"])  # (28, 10)
    assert probabilities.shape == (28, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    # After the last row the model has read the whole image: its answer.
    np.testing.assert_allclose(probabilities[-1], body["probabilities"], atol=1e-5)


def test_concurrent_requests_each_get_their_own_answer(untrained_run, serve):
    client = serve([untrained_run("run", hidden_sizes=(16,))], max_batch=8)
    rng = np.random.default_rng(0)
    images = [rng.random((28, 28)).astype(np.float32) for _ in range(40)]
    expected = Predictor.from_run(client.app.state.runs["run"].predictor.run.directory).classify(
        np.stack(images), [str(index) for index in range(40)]
    )
    responses = client.post_many([
        {"url": "/api/predict", "json": {"pixels": image.tolist()}} for image in images
    ])  # fmt: skip
    for response, prediction in zip(responses, expected):
        assert response.status_code == 200
        np.testing.assert_allclose(
            response.json()["probabilities"], prediction.probabilities, atol=1e-5
        )


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_images_get_the_reasons_predict_gives(two_runs, name):
    make, words = BAD_IMAGES[name]
    raw = two_runs.post("/api/predict", content=make(), headers=PNG)
    assert_error(raw, BAD_IMAGE_STATUS[name], words)
    upload = two_runs.post("/api/predict", files={"file": ("x.png", make(), "image/png")})
    assert_error(upload, BAD_IMAGE_STATUS[name], words)
    # The model's thread took the bad image in its stride: the next request is answered.
    good = two_runs.post("/api/predict", content=png_bytes(DIGIT), headers=PNG)
    assert good.status_code == 200


def test_a_bad_image_among_good_ones_spoils_none_of_them(two_runs):
    images = [png_bytes(255 - np.roll(DIGIT, shift, axis=1)) for shift in range(-6, 7)]
    requests = [{"url": "/api/predict", "content": image, "headers": PNG} for image in images]
    requests.insert(5, {"url": "/api/predict", "content": BAD_IMAGES["garbled_exif"][0](),
                        "headers": PNG})  # fmt: skip
    expected = Predictor.from_run(two_runs.app.state.runs["first"].predictor.run.directory)
    answers = two_runs.post_many(requests)
    assert answers.pop(5).status_code == 400
    for answer, image in zip(answers, images):
        probabilities = expected.predict([Image.open(io.BytesIO(image))])[0].probabilities
        np.testing.assert_allclose(answer.json()["probabilities"], probabilities, atol=1e-5)


def test_bodies_over_the_limit_are_refused(untrained_run, serve):
    client = serve([untrained_run()], max_body_bytes=100_000)
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8))
    assert len(big) > 100_000
    assert_error(client.post("/api/predict", content=big, headers=PNG), 413, "0.0953674 MiB")
    files = {"file": ("big.png", big, "image/png")}
    assert_error(client.post("/api/predict", files=files), 413, "limit")

    async def chunks():  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    assert_error(client.post("/api/predict", content=chunks(), headers=PNG), 413, "limit")
    # Under the limit all is well.
    assert client.post("/api/predict", content=png_bytes(DIGIT), headers=PNG).status_code == 200


@pytest.mark.parametrize(
    ("headers", "files", "words"),
    [
        ({"content-type": "text/plain"}, None, "text/plain is not accepted"),
        ({}, None, "(none) is not accepted"),
        (None, {"file": ("notes.pdf", b"%PDF-1.4", "application/pdf")}, "application/pdf, not an image"),
    ],
)  # fmt: skip
def test_what_is_not_an_image_is_415(two_runs, headers, files, words):
    content = None if files else b"some bytes"
    response = two_runs.post("/api/predict", content=content, headers=headers, files=files)
    assert_error(response, 415, words)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "must be"),
        (b'{"image": []}', "must be"),
        (json.dumps({"pixels": [[0.5] * 28] * 27}).encode(), "28 rows of 28"),
        (json.dumps({"pixels": [[0.5] * 27] * 28}).encode(), "28 rows of 28"),
        (json.dumps({"pixels": [["0.5"] * 28] * 28}).encode(), "28 rows of 28"),
        (json.dumps({"pixels": [[True] * 28] * 28}).encode(), "28 rows of 28"),
        (json.dumps({"pixels": [[255] * 28] * 28}).encode(), "divide 8-bit values by 255"),
        (json.dumps({"pixels": [[math.nan] * 28] * 28}).encode(), "28 rows of 28"),
        (json.dumps({"pixels": [[0] * 28] * 28}).encode(), "no visible ink"),
        (b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "must be"),  # too deep to parse
    ],
)
def test_bad_pixels_are_422(two_runs, body, words):
    response = two_runs.post(
        "/api/predict", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 422, words)


def test_runs_and_routes_that_do_not_exist(two_runs):
    detail = assert_error(
        two_runs.post("/api/predict?run=../first", content=png_bytes(DIGIT), headers=PNG), 404
    )
    assert "first, second" in detail
    assert_error(two_runs.post("/api/predict?steps=perhaps", content=b"", headers=PNG), 422,
                 "steps")  # fmt: skip
    assert_error(two_runs.get("/nowhere"), 404)
    assert_error(two_runs.get("/api/predict"), 405)


def test_a_failing_model_answers_500_without_its_traceback(untrained_run, serve):
    client = serve([untrained_run()])
    model = client.app.state.runs["run"].predictor.model
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))  # damaged weights: NaN outputs
    response = client.post("/api/predict", content=png_bytes(DIGIT), headers=PNG)
    detail = assert_error(response, 500)
    assert detail == "the server failed to answer this request; its log says why"
    # The model's thread lives on: the next request is answered too (with the same error).
    assert client.post("/api/predict", content=png_bytes(DIGIT), headers=PNG).status_code == 500


def test_served_names_must_differ(untrained_run, tmp_path):
    first = untrained_run("same")
    (tmp_path / "other").mkdir()
    second = untrained_run("other/same")
    with pytest.raises(ConfigError, match="NAME=PATH"):
        create_app([first, second])
    app = create_app({"a": first, "b": second})
    assert list(app.state.runs) == ["a", "b"]
    app.state.close()


@pytest.mark.slow
def test_real_test_digits_are_read_right(mnist_run, mnist_dir, serve):
    images, labels = load_dataset("mnist", mnist_dir).split("test")
    client = serve([mnist_run])
    predictor = Predictor.from_run(mnist_run)
    right = 0
    for digit, label in zip(images[:30], labels[:30]):
        response = client.post("/api/predict?steps=true", content=drawn(digit), headers=PNG)
        body = response.json()
        right += body["index"] == label
        # The page's answer is the command line's answer for the same file.
        expected = predictor.predict([Image.open(io.BytesIO(drawn(digit)))])[0]
        np.testing.assert_allclose(body["probabilities"], expected.probabilities, atol=1e-5)
    assert right >= 27, f"{right} of 30 test digits read right"
