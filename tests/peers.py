"""Real peers for integration tests: find them, start them on loopback, stop them by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

REQUIRE_PEERS = os.environ.get("FACWATCH_REQUIRE_PEERS") == "1" or os.environ.get("CI") == "true"


def require(binary: str) -> str:
    """Path of a peer program; skip without it locally, FAIL without it in CI (a missing peer is a failure)."""
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if Path(p).exists()), None)
    if path is None:
        message = f"{binary} is not installed (make test installs it: apt-get install snmp snmpd mbpoll ...)"
        if REQUIRE_PEERS:
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_for_tcp(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


class PeerProcess:
    """A peer program started for a test and stopped by its PID (process group)."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        """PID of the started program."""
        return self.process.pid

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self._log_file.close()

    def output(self) -> str:
        """What the process printed so far (also after stop())."""
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")
