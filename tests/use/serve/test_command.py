"""`seqmnist serve` as a user runs it: a real server on a free loopback port, stopped by signals."""

import json
import signal
import socket
import urllib.request

import pytest
from bad_images import DIGIT, png_bytes
from live_server import start, stop

from seqmnist.cli.serve import is_loopback


def post_png(address: str, data: bytes) -> dict:
    request = urllib.request.Request(
        address + "api/predict?steps=true", data=data, headers={"Content-Type": "image/png"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serves_then_stops_cleanly(untrained_run, number):
    first, second = untrained_run("first"), untrained_run("second", cell="gru")
    process, address = start(str(first), f"renamed={second}")
    try:
        with urllib.request.urlopen(address + "api/runs", timeout=10) as answer:
            assert [run["name"] for run in json.load(answer)["runs"]] == ["first", "renamed"]
        assert len(post_png(address, png_bytes(DIGIT))["steps"]["steps"]) == 28
        with urllib.request.urlopen(address, timeout=10) as page:
            assert b"<canvas" in page.read()
    finally:
        status, errors = stop(process, number)
    assert status == 0, errors
    assert errors.strip() == "seqmnist: server stopped"


def test_a_busy_port_and_a_bad_run_are_one_line(untrained_run, one_error_line):
    run = str(untrained_run())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        line = one_error_line(["serve", run, "--port", port], "--port")
    assert f"cannot listen on 127.0.0.1:{port}" in line
    one_error_line(["serve", run, "--port", "70000"], "--port")
    one_error_line(["serve", run, "--host", "no-such-host.invalid"], "--host")
    one_error_line(["serve", run, "/no/such/run"], "/no/such/run")
    one_error_line(["serve", run, run], "NAME=PATH")
    other = str(untrained_run("other"))
    one_error_line(["serve", f"a={run}", f"a={other}"], "NAME=PATH")  # not one of them dropped
    one_error_line(["serve", f"no/slash={run}"], "cannot name a served run")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.org", False)],
)  # fmt: skip
def test_only_loopback_addresses_go_without_a_warning(host, loopback):
    assert is_loopback(host) is loopback
