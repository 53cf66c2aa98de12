"""Load-test `seqmnist serve`: requests/s, latency and errors for PNG uploads, and memory.

    python benchmarks/serve_load.py /tmp/serve-runs/default          # 1, 16, 64 clients
    python benchmarks/serve_load.py RUN --clients 16 --requests 5000 --memory-requests 0

Starts `seqmnist serve RUN --port 0` itself on a free loopback port, waits for
/healthz, then for each number of clients sends multipart/form-data uploads
(field "file") of real MNIST test digits rendered as PNG, half as MNIST has
them (light ink on black) and half dark on white. Each client holds one
HTTP/1.1 keep-alive connection and sends its next request when the last one's
answer is in; a request's latency runs from writing it to reading the whole
answer. Each level stops at --requests or --max-seconds, whichever comes
first. Then the server's memory (VmRSS) is read before and after
--memory-requests more requests, with samples along the way. Errors are
non-200 answers, answers that are no JSON or have no label, timeouts and
broken connections; accuracy against the true labels is a sanity figure.
The server is always stopped (SIGINT, then SIGKILL), on error or Ctrl-C too.

The client runs on the same cores as the server, so it is kept cheap: raw
asyncio streams and request bytes built once.

Writes benchmarks/results/DATE_CPU_torchVERSION_serve.json; BENCHMARKS.md
quotes these files. Data: the MNIST test files in --data-dir (or
$SEQMNIST_DATA_DIR), read with seqmnist's own loader.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import platform
import re
import selectors
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from seqmnist.cli.serve import is_loopback
from seqmnist.data.datasets import load_split
from seqmnist.errors import SeqmnistError
from seqmnist.runtime import cpu_flags, device_name

RESULTS = Path(__file__).parent / "results"
SEQMNIST = Path(sys.executable).with_name("seqmnist")
BOUNDARY = "seqmnist-load-boundary"
TARGET = {"clients": 16, "requests_per_second": 500, "p99_ms": 50, "errors": 0}
# "Flat" memory: under half a KiB a request over the 20,000 (a leak of a response's
# worth, about 3 KiB, on each would be 60 MiB), allowing for the allocator settling.
MAX_GROWTH_MIB = 10


def main() -> int:
    args = parse_args()
    if not is_loopback(args.host):
        print(f"serve_load.py: error: --host {args.host} is not a loopback address; "
              "this load test only runs on this machine", file=sys.stderr)  # fmt: skip
        return 2
    try:
        split = load_split("mnist", args.data_dir, split="test", download=False)
    except SeqmnistError as error:  # one line, as seqmnist prints it
        print(f"serve_load.py: error: {error}", file=sys.stderr)
        return 2
    bodies, labels = png_uploads(split.images, split.labels, args.digits, args.scale)
    class_names = list(split.class_names)
    command = [str(SEQMNIST), "serve", str(args.run), "--host", args.host, "--port", "0"]
    # Ctrl-C raises KeyboardInterrupt; SIGTERM is made to do the same, so `finally` stops the server.
    signal.signal(signal.SIGTERM, _interrupt)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        host, port = server_address(server, args.startup_seconds)
        wait_healthy(host, port, args.startup_seconds)
        requests = [upload_request(host, port, body) for body in bodies]
        result = asyncio.run(measure(args, server.pid, host, port, requests, labels, class_names))
    except KeyboardInterrupt:
        print("serve_load.py: interrupted; server stopped", file=sys.stderr)
        return 130
    except LoadTestError as error:
        print(f"serve_load.py: error: {error}", file=sys.stderr)
        return 1
    finally:
        stop(server)
    result.update(
        date=time.strftime("%Y-%m-%d"),
        command=shlex.join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
        server_command=shlex.join(["seqmnist", *command[1:]]),
        device_name=device_name(torch.device("cpu")),
        cpu_flags=cpu_flags(),
        cpu_count=_cpu_count(),
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        upload=f"{len(bodies)} MNIST test digits as {28 * args.scale}x{28 * args.scale} PNG, "
        "half light-on-black, half dark-on-white; multipart/form-data field 'file'",
    )
    result["target"] = target_verdict(result)
    print_summary(result)
    if args.no_save:
        return 0
    device = re.sub(r"[^A-Za-z0-9]+", "-", result["device_name"]).strip("-")
    name = f"{result['date']}_{device}_torch{result['torch_version'].split('+')[0]}_serve.json"
    RESULTS.mkdir(exist_ok=True)
    path = args.out or RESULTS / name
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run directory to serve (written by seqmnist train)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to serve on")
    parser.add_argument(
        "--clients", default="1,16,64", help="concurrent clients per level (default: 1,16,64)"
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per level (default: 2000)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=60, help="time limit per level (default: 60)"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="requests before measuring (default: 200)"
    )
    parser.add_argument(
        "--memory-requests",
        type=int,
        default=20000,
        help="requests between the memory readings, 0 to skip (default: 20000)",
    )
    parser.add_argument(
        "--memory-clients", type=int, default=16, help="clients for the memory run (default: 16)"
    )
    parser.add_argument(
        "--memory-max-seconds",
        type=float,
        default=300,
        help="time limit of the memory run (default: 300)",
    )
    parser.add_argument(
        "--digits", type=int, default=1000, help="distinct test digits sent (default: 1000)"
    )
    parser.add_argument(
        "--scale", type=int, default=1, help="PNG size as a multiple of 28 px (default: 1)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10, help="seconds one request may take (default: 10)"
    )
    parser.add_argument(
        "--startup-seconds", type=float, default=60, help="time the server may take to start"
    )
    parser.add_argument("--data-dir", type=Path, help="folder with the MNIST test files")
    parser.add_argument(
        "--out",
        type=Path,
        help="results file (default: benchmarks/results/DATE_CPU_torchV_serve.json)",
    )
    parser.add_argument("--no-save", action="store_true", help="print the results only")
    args = parser.parse_args()  # fmt: skip
    args.clients = [int(count) for count in args.clients.split(",")]
    if min(args.clients) < 1 or args.requests < 1 or args.max_seconds <= 0 or args.digits < 1:
        parser.error("--clients, --requests, --max-seconds and --digits must be positive")
    return args


class LoadTestError(Exception):
    pass


# --- the requests --------------------------------------------------------------------------


def png_uploads(
    images: np.ndarray, labels: np.ndarray, count: int, scale: int
) -> tuple[list[bytes], list[int]]:
    """Multipart bodies of ``count`` test digits as PNG files, every other one dark on white."""
    bodies = []
    for index in range(min(count, len(images))):
        pixels = images[index] if index % 2 == 0 else 255 - images[index]
        image = Image.fromarray(pixels)
        if scale > 1:
            image = image.resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
        png = io.BytesIO()
        image.save(png, format="PNG")
        bodies.append(
            (
                f"--{BOUNDARY}\r\n"
                f'Content-Disposition: form-data; name="file"; filename="digit-{index}.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + png.getvalue()
            + f"\r\n--{BOUNDARY}--\r\n".encode()
        )
    return bodies, [int(label) for label in labels[: len(bodies)]]


def upload_request(host: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- the clients ---------------------------------------------------------------------------


@dataclass
class Level:
    """One level's shared budget and what its clients measured."""

    requests: int
    deadline: float
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    correct: int = 0
    sent: int = 0

    def take(self) -> int | None:
        """The next request's number, or None when the count or the time is used up."""
        if self.sent >= self.requests or time.perf_counter() >= self.deadline:
            return None
        self.sent += 1
        return self.sent - 1

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


# A dozen lines of HTTP/1.1 over asyncio streams, not httpx or aiohttp: on 2 cores shared
# with the server, a client library's per-request cost (header objects, state machines,
# its own pools) would take CPU from the server and lower the figure being measured.
async def client(
    level: Level, host: str, port: int, requests: list[bytes], labels: list[int],
    class_names: list[str], offset: int, timeout: float,
) -> None:  # fmt: skip
    reader = writer = None
    while (number := level.take()) is not None:
        index = (offset + number) % len(requests)
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            writer.write(requests[index])
            status, keep_alive, body = await asyncio.wait_for(_response(reader), timeout)
            level.latencies.append(time.perf_counter() - start)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            level.error("connection")
            writer = _close(writer)
            continue
        except ValueError:  # no status line or Content-Length this client can read
            level.error("unreadable answer")
            writer = _close(writer)
            continue
        except TimeoutError:
            level.error("timeout")
            writer = _close(writer)
            continue
        if not keep_alive:
            writer = _close(writer)
        if status != 200:
            level.error(f"HTTP {status}")
            continue
        try:
            label = json.loads(body)["label"]
        except (ValueError, KeyError, TypeError):
            level.error("bad JSON")
            continue
        if label not in class_names:
            level.error("no label")
        elif label == class_names[labels[index]]:
            level.correct += 1
    _close(writer)


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(status, keep-alive, body) of one answer, its length read from Content-Length."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
    if "content-length" not in headers:  # chunked: uvicorn sends none such for JSON
        raise ValueError("no Content-Length")
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection") != "close", body


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
    return None


async def run_level(
    clients: int, count: int, seconds: float, host: str, port: int, requests: list[bytes],
    labels: list[int], class_names: list[str], timeout: float, on_progress=None,
) -> dict:  # fmt: skip
    level = Level(count, time.perf_counter() + seconds)
    start = time.perf_counter()
    tasks = [
        client(level, host, port, requests, labels, class_names, offset, timeout)
        for offset in range(0, clients * 97, 97)  # clients start at different digits
    ]
    if on_progress is not None:
        tasks.append(on_progress(level))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    done = len(level.latencies)
    latencies_ms = np.array(level.latencies) * 1000
    return {
        "clients": clients,
        "requests": level.sent,
        "answered": done,
        "seconds": round(elapsed, 3),
        "stopped_by": "count" if level.sent >= count else "time",
        "requests_per_second": round(done / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies_ms, 50)), 2) if done else None,
        "p99_ms": round(float(np.percentile(latencies_ms, 99)), 2) if done else None,
        "max_ms": round(float(latencies_ms.max()), 2) if done else None,
        "errors": sum(level.errors.values()),
        "error_kinds": level.errors,
        "accuracy": round(level.correct / done, 4) if done else None,
    }


async def measure(
    args: argparse.Namespace, pid: int, host: str, port: int, requests: list[bytes],
    labels: list[int], class_names: list[str],
) -> dict:  # fmt: skip
    common = dict(host=host, port=port, requests=requests, labels=labels,
                  class_names=class_names, timeout=args.timeout)  # fmt: skip
    rss_start = rss_mib(pid)
    if args.warmup:  # first calls pay for lazy initialisation in torch and the allocator
        await run_level(max(args.clients), args.warmup, args.max_seconds, **common)
    levels = []
    for clients in args.clients:
        result = await run_level(clients, args.requests, args.max_seconds, **common)
        levels.append(result)
        print(_row(result), flush=True)
    result = {"rss_mib_at_start": rss_start, "levels": levels}
    if args.memory_requests:
        samples = []
        step = max(args.memory_requests // 10, 1)

        async def sample(level: Level) -> None:  # RSS after every tenth of the requests
            next_at = step
            while level.sent < level.requests and time.perf_counter() < level.deadline:
                if level.sent >= next_at:
                    samples.append([level.sent, rss_mib(pid)])
                    next_at += step
                await asyncio.sleep(0.05)

        before = rss_mib(pid)
        run = await run_level(args.memory_clients, args.memory_requests, args.memory_max_seconds,
                              on_progress=sample, **common)  # fmt: skip
        after = rss_mib(pid)
        result["memory"] = {
            "clients": args.memory_clients,
            "requests": run["requests"],
            "errors": run["errors"],
            "requests_per_second": run["requests_per_second"],
            "rss_mib_before": before,
            "rss_mib_after": after,
            "growth_mib": round(after - before, 1),
            "samples": [[0, before], *samples, [run["requests"], after]],
        }
    return result


def rss_mib(pid: int) -> float:
    """The process's resident memory, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    raise LoadTestError(f"no VmRSS in /proc/{pid}/status")


# --- the server ----------------------------------------------------------------------------


def server_address(server: subprocess.Popen, seconds: float) -> tuple[str, int]:
    """Host and port from the server's "serving NAME at http://HOST:PORT/" line."""
    deadline = time.monotonic() + seconds
    with selectors.DefaultSelector() as selector:
        selector.register(server.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = server.stdout.readline()
            if not line:
                raise LoadTestError(f"the server exited (status {server.wait()}) before serving")
            if match := re.search(r" at http://\[?([^\]/]+?)\]?:(\d+)/", line):
                host, port = match[1], int(match[2])
                if not is_loopback(host):  # never load anything but this machine
                    raise LoadTestError(f"the server listens on {host}, not on loopback")
                return host, port
    raise LoadTestError(f"the server printed no address within {seconds:g} s")


def wait_healthy(host: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(host, port, timeout=5)  # no proxies, unlike urllib
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise LoadTestError(f"/healthz did not answer 200 within {seconds:g} s")


def stop(server: subprocess.Popen) -> None:
    """SIGINT, as Ctrl-C stops it; SIGKILL if it has not stopped in 15 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    server.stdout.close()


# --- the report ----------------------------------------------------------------------------


def target_verdict(result: dict) -> dict:
    at = next((level for level in result["levels"] if level["clients"] == TARGET["clients"]), None)
    verdict = {**TARGET, "max_growth_mib": MAX_GROWTH_MIB, "measured": at is not None}
    if memory := result.get("memory"):
        verdict["memory_flat"] = memory["growth_mib"] < MAX_GROWTH_MIB and memory["errors"] == 0
    if at is not None:
        verdict["met"] = (
            at["requests_per_second"] >= TARGET["requests_per_second"]
            and at["p99_ms"] is not None
            and at["p99_ms"] < TARGET["p99_ms"]
            and at["errors"] == TARGET["errors"]
        )
    return verdict


def _row(level: dict) -> str:
    return (
        f"{level['clients']:>3} clients: {level['answered']:>6} answered in {level['seconds']:6.1f} s "
        f"(stopped by {level['stopped_by']}), {level['requests_per_second']:7.1f} requests/s, "
        f"p50 {level['p50_ms']} ms, p99 {level['p99_ms']} ms, {level['errors']} errors "
        f"{level['error_kinds'] or ''}, accuracy {level['accuracy']}"
    )


def print_summary(result: dict) -> None:
    print(f"{result['device_name']} ({result['cpu_count']} CPUs; {' '.join(result['cpu_flags'])}), "
          f"torch {result['torch_version']}")  # fmt: skip
    if memory := result.get("memory"):
        print(
            f"server RSS {memory['rss_mib_before']} MiB before and {memory['rss_mib_after']} MiB "
            f"after {memory['requests']} requests ({memory['growth_mib']:+} MiB), "
            f"{memory['errors']} errors; samples {memory['samples']}"
        )
    target = result["target"]
    if target["measured"]:
        print(
            f"target at {target['clients']} clients (>= {target['requests_per_second']} "
            f"requests/s, p99 < {target['p99_ms']} ms, no errors): "
            f"{'met' if target['met'] else 'MISSED'}"
        )
    if "memory_flat" in target:
        print(
            f"memory flat (growth < {target['max_growth_mib']} MiB, no errors): "
            f"{'yes' if target['memory_flat'] else 'NO'}"
        )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _interrupt(number, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
