"""Two workers on one study in a real PostgreSQL server, as workers on many machines share one.

The server is Debian's `postgresql` package (`make test` installs it where
apt-get can), started here in a temporary folder, listening on a unix socket
only, and stopped after.
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest
from conftest import finish, runs_of, trials, worker

COMPLETE = optuna.trial.TrialState.COMPLETE

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
PORT = 54329


def as_server_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: the package's own user runs it then.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture
def postgres():
    if not BINARIES:
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql; `make test` does, as root)"
        )
    pytest.importorskip(
        "psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')"
    )
    binaries = Path(BINARIES[-1])

    def run(program: str, *arguments: str) -> None:
        command = as_server_user([str(binaries / program), *arguments])
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    # Not under pytest's temporary folders: they are private to this user, and the
    # server's user must reach its own.
    folder = Path(tempfile.mkdtemp(prefix="seqmnist-postgres-"))
    data, sockets = folder / "data", folder / "sockets"
    try:
        sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            shutil.chown(sockets, "postgres")
        run("initdb", "-D", str(data), "-A", "trust", "-U", "seqmnist")
        options = f"-k {sockets} -c listen_addresses='' -p {PORT}"
        run("pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        try:
            run("createdb", "-h", str(sockets), "-p", str(PORT), "-U", "seqmnist", "sweep")
            yield f"postgresql://seqmnist@/sweep?host={sockets}&port={PORT}"
        finally:
            run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_a_study_in_postgresql(postgres, write_spec, tmp_path):
    # A folder each, as on two machines: they share nothing but the database.
    spec, here, there = write_spec(steps=60), tmp_path / "here", tmp_path / "there"
    first = worker(spec, here, "--storage", postgres)
    second = worker(spec, there, "--storage", postgres)
    for status, _, errors in (finish(first), finish(second)):
        assert status == 0, errors
    found = trials(here, postgres)
    finished = runs_of(found)
    assert len(finished) == 8 and len(set(finished)) == 8  # every run, each once
    # Anything else is a worker's empty take at the very end, marked and counted nowhere.
    assert all(t.user_attrs.get("stray") for t in found if t.state != COMPLETE)
    assert "postgresql" in (here / "sweep.json").read_text()
