import base64
from pathlib import Path

from bench.lua import write_form_post
from bench.peers import aiohttp_sign
from bench.report import RowResult, format_table, ratio_values
from bench.run import select_rows
from pytest_aiohttp import AiohttpClient


def test_identity_row_brings_its_floor_and_ceiling() -> None:
    assert [row.name for row in select_rows("identity-token")] == [
        "identity-token",
        "aiohttp-sign",
        "rsa-sign-raw",
    ]


def test_form_post_script(tmp_path: Path) -> None:
    text = write_form_post(tmp_path / "t.lua", "a=1&b=2").read_text()
    assert 'wrk.method = "POST"' in text
    assert 'wrk.body = "a=1&b=2"' in text
    assert "application/x-www-form-urlencoded" in text


def test_raw_row_median_and_ratio() -> None:
    raw = RowResult("rsa-sign-raw", "ceiling", samples=[2000.0, 2500.0, 3000.0])
    assert raw.median("requests_per_sec") == 2500.0
    assert raw.median("p99_ms") is None
    assert raw.to_json()["raw_per_sec"] == [2000.0, 2500.0, 3000.0]
    assert "rsa-sign-raw" in format_table([raw])
    assert ratio_values([raw])["identity-token / rsa-sign-raw req/s"] is None


async def test_signing_peer_answers_a_form_post_with_a_signed_token(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(aiohttp_sign.make_app())
    response = await client.post("/issuer/auth/oauth/token", data={"grant_type": "x"})
    assert response.status == 200
    token = (await response.json())["access_token"]
    signing_input, _, signature = token.rpartition(".")
    assert len(base64.urlsafe_b64decode(signature + "==")) == 256  # one RSA-2048 signature
    assert signing_input.startswith("eyJhbGciOiJSUzI1NiJ9.")
    assert (await client.get("/healthz")).status == 200
