"""The listening sockets: a gateway refuses a port another process listens on, and connections
queued to a worker survive that worker being replaced (its slot's socket stays open in the
supervisor, with default kernel settings)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from procs import Gateway


def _serve(database_url: str, data_dir: str, port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "OTA_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--workers", "1",
                           "--data-dir", data_dir], env=env, capture_output=True, text=True, timeout=60)


def test_a_port_another_process_listens_on_is_refused(database_url, data_dir):
    for reuseport in (False, True):  # a plain listener, and one that allows SO_REUSEPORT sharing
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        try:
            out = _serve(database_url, data_dir, holder.getsockname()[1])
        finally:
            holder.close()
        assert out.returncode == 2, out.stdout + out.stderr
        assert "cannot listen" in out.stderr and "listening on" not in out.stdout


def test_a_second_gateway_on_the_same_port_is_refused(database_url, data_dir):
    with Gateway(database_url, data_dir) as gw:
        out = _serve(database_url, data_dir, gw.port)
        assert out.returncode == 2 and "cannot listen" in out.stderr


def _request(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    return s


def _answer(s: socket.socket) -> bytes:
    data = b""
    with s:
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("mode", ["reuseport", "shared"])
def test_connections_queued_to_a_dead_worker_are_answered_by_its_replacement(database_url, data_dir, mode):
    """The worker is stopped (SIGSTOP) so connections queue on its socket, then killed: the
    supervisor's replacement takes the same socket and answers every queued connection."""
    with Gateway(database_url, data_dir, workers=1, env={"OTA_LISTEN_MODE": mode}) as gw:
        (worker,) = gw.worker_pids()
        os.kill(worker, signal.SIGSTOP)
        queued = [_request(gw.port) for _ in range(20)]  # handshakes complete in the kernel's queue
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 60
        answers = [_answer(s) for s in queued]  # bounded by the sockets' 30 s timeout
        assert time.monotonic() < deadline
        assert all(a.startswith(b"HTTP/1.1 200") for a in answers), [a[:40] for a in answers]
        assert gw.worker_pids() and worker not in gw.worker_pids()
