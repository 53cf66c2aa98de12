"""A real `seqmnist serve` process on a free loopback port, for the tests that need sockets."""

import json
import subprocess
import sys
import time
import urllib.request

STARTUP_SECONDS = 60


def start(*arguments: str) -> tuple[subprocess.Popen, str]:
    """Start the server on a free port; return it and its address once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "seqmnist", "serve", *arguments, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = process.stdout.readline()  # "serving NAMES at http://127.0.0.1:PORT/ (Ctrl-C stops)"
    assert " at http://127.0.0.1:" in line, (line, process.stderr.read() if not line else "")
    address = line.split(" at ")[1].split()[0]
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            with urllib.request.urlopen(address + "healthz", timeout=5) as answer:
                assert json.load(answer)["status"] == "ok"
                return process, address
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.1)


def stop(process: subprocess.Popen, number: int) -> tuple[int, str]:
    process.send_signal(number)
    try:
        _, errors = process.communicate(timeout=20)
    finally:
        process.kill()
    return process.returncode, errors
