"""Fixtures for the data tests: a local HTTP server and synthetic IDX datasets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from seqmnist.data import write_idx
from seqmnist.data.sources import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS


@dataclass
class Route:
    """What the local server answers on one path."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    delay: float = 0.0  # seconds to wait before answering, to provoke timeouts
    body_delay: float = 0.0  # seconds between the headers and the body
    content_length: int | None = None  # a lying Content-Length, or -1 for none


@dataclass
class LocalServer:
    """An HTTP server on 127.0.0.1; unknown paths answer 404."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: bytes = b"", **options: object) -> str:
        """Answer `path` with `body` (options as in Route); returns its URL."""
        self.routes[path] = Route(body, **options)  # type: ignore[arg-type]
        return self.url(path)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        app: LocalServer = self.server.app  # type: ignore[attr-defined]
        app.requests.append(self.path)
        route = app.routes.get(self.path, Route(b"not found", status=404))
        time.sleep(route.delay)
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        length = route.content_length if route.content_length is not None else len(route.body)
        if length >= 0:  # a negative length sends none: the body ends when the connection does
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()
        time.sleep(route.body_delay)
        self.wfile.write(route.body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must never see requests meant for 127.0.0.1."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[LocalServer]:
    app = LocalServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.app = app  # type: ignore[attr-defined]
    httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
    app.port = httpd.server_address[1]
    # A short poll interval keeps shutdown (and so each test) fast.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield app
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def refused_url() -> str:
    """A URL on a local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A URL on a local port that accepts connections but never answers them."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # the kernel completes connections in the backlog; none is ever read
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


WriteDataset = Callable[..., Path]


@pytest.fixture
def write_dataset() -> WriteDataset:
    """Writes the four IDX files of a dataset into a folder and returns the folder."""

    def write(
        folder: Path,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        compress: bool = True,
    ) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".gz" if compress else ""
        for stem, array in (
            (TRAIN_IMAGES, train_images),
            (TRAIN_LABELS, train_labels),
            (TEST_IMAGES, test_images),
            (TEST_LABELS, test_labels),
        ):
            write_idx(folder / f"{stem}{suffix}", array, compress=compress)
        return folder

    return write


@pytest.fixture
def tiny_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """12 training and 4 test images of 5x7 pixels in 3 classes."""
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, size=(12, 5, 7), dtype=np.uint8)
    train_labels = np.array([0, 1, 2] * 4, dtype=np.uint8)
    test_images = rng.integers(0, 256, size=(4, 5, 7), dtype=np.uint8)
    test_labels = np.array([2, 1, 0, 1], dtype=np.uint8)
    return train_images, train_labels, test_images, test_labels
