"""The echo upstream: what it received, as it received it, over a real socket."""

from __future__ import annotations

import base64
import json
import select
import signal
import subprocess
import sys

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from tests.abandon import leave_mid_body, served, server_errors
from tests.gateway.conftest import raw_request
from tests.test_cli import wait_http
from tokengate.echo import create_echo_app


async def test_any_method_and_path_is_echoed_with_query_and_headers_as_sent(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_echo_app())
    resp = await client.request(
        "PATCH",
        "/some/path?a=1&a=2&b=%20x",
        headers={"X-Test-Claim": "test"},
        data=b'{"hello": "world"}',
    )
    assert resp.status == 200
    echoed = await resp.json()
    assert echoed["method"] == "PATCH"
    assert echoed["path"] == "/some/path?a=1&a=2&b=%20x"
    assert echoed["query"] == [["a", "1"], ["a", "2"], ["b", " x"]]
    assert ["X-Test-Claim", "test"] in echoed["headers"]
    assert echoed["body"] == '{"hello": "world"}'
    assert echoed["body_base64"] is False


async def test_a_body_that_is_not_utf8_comes_back_base64(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_echo_app())
    payload = bytes(range(256))
    resp = await client.post("/", data=payload)
    echoed = await resp.json()
    assert echoed["body_base64"] is True
    assert base64.b64decode(echoed["body"]) == payload


async def test_bodies_over_the_limit_are_413(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_echo_app(max_body=1000))
    resp = await client.post("/", data=b"x" * 1000)
    assert resp.status == 200
    resp = await client.post("/", data=b"x" * 1001)
    assert resp.status == 413
    assert await resp.json() == {"message": "Request body larger than 1000 bytes"}


async def test_raw_path_repeated_headers_and_bytes_outside_ascii_are_shown_as_sent(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_echo_app())
    assert client.port is not None
    answer = await raw_request(
        client.port,
        b"GET /%41/x%2fy?q=%7e HTTP/1.1\r\nHost: x\r\nX-Odd: caf\xe9\r\n"
        b"x-repeat: one\r\nX-Repeat: two\r\nConnection: close\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    echoed = json.loads(body)
    assert echoed["path"] == "/%41/x%2fy?q=%7e"  # nothing decoded or normalised
    headers = echoed["headers"]
    assert ["X-Odd", "caf\u00e9"] in headers
    repeats = [pair for pair in headers if pair[0].lower() == "x-repeat"]
    assert repeats == [["x-repeat", "one"], ["X-Repeat", "two"]]  # order and spelling kept


def test_python_m_tokengate_echo_serves_alone_says_its_port_and_stops_on_ctrl_c() -> None:
    """On port 0 it says the port the OS gave it, so a kong.yaml `url:` can name it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate.echo", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], 30)
        assert readable, "python -m tokengate.echo said nothing in 30 s"
        said = process.stdout.readline()  # written once it listens
        address = said.removeprefix("echo upstream on ").partition(";")[0]
        assert address.startswith("127.0.0.1:") and address != "127.0.0.1:0", said
        wait_http(f"http://{address}/healthz", process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["--help"], 0, "usage: python -m tokengate.echo [HOST:PORT]  (default 127.0.0.1:9100)"),
        (["-h"], 0, "usage: python -m tokengate.echo [HOST:PORT]  (default 127.0.0.1:9100)"),
        (["127.0.0.1:99999"], 2, "usage: python -m tokengate.echo [HOST:PORT]"),
        (["tokengate-test.invalid:18080"], 1, "echo: cannot listen on "),
    ],
)
def test_python_m_tokengate_echo_help_and_mistakes(args: list[str], code: int, said: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tokengate.echo", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == code
    assert (result.stdout + result.stderr).startswith(said)
    assert "Traceback" not in result.stderr and "error -" not in result.stderr


async def test_a_client_leaving_mid_body_is_not_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with served(create_echo_app()) as url, aiohttp.ClientSession() as session:
        await leave_mid_body(url, "/upload", "application/octet-stream")
        assert server_errors(caplog) == []
        async with session.get(url + "/after") as resp:
            assert resp.status == 200  # and the next client is served
