"""Ctrl-C twice: the first drains (requests in progress may finish), the second stops now.
Real `tokengate identity` and `tokengate run` processes, held in their drain by a request
whose body never comes."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from tests.e2e.test_run_cli import run_on_free_ports
from tests.ports import free_port
from tests.test_cli import wait_http

CUT = "SIGINT again: cutting off the requests in progress"


def hold_a_request(port: int) -> socket.socket:
    """A request whose body never arrives: the server's drain waits for it."""
    held = socket.create_connection(("127.0.0.1", port))
    held.sendall(
        b"POST /v1/auth-servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer e2e\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    time.sleep(1)  # the handler is reading the body (not observable from here: time enough)
    return held


def interrupt_twice(process: subprocess.Popen[str]) -> float:
    """SIGINT; check the process is still draining a second later; SIGINT again. The seconds
    from the second signal to the exit (which must be 0)."""
    process.send_signal(signal.SIGINT)
    time.sleep(1)
    assert process.poll() is None, "the first Ctrl-C should wait for the held request"
    signalled = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0
    return time.monotonic() - signalled


def test_identity_stops_at_the_second_ctrl_c() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tokengate", "identity", "--in-memory"),
            *("--listen", f"127.0.0.1:{port}", "--admin-token", "e2e"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        with hold_a_request(port):
            assert interrupt_twice(process) < 10  # aiohttp alone would wait 60 s
        _, stderr = process.communicate()
        assert CUT in stderr
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_run_stops_at_the_second_ctrl_c() -> None:
    running, _, identity = run_on_free_ports("--admin-token", "e2e")
    try:
        running.panel()
        with hold_a_request(identity):
            assert interrupt_twice(running.process) < 10
        stderr = running.stderr()
        assert CUT in stderr
        assert "Traceback" not in stderr
    finally:
        running.kill()
