"""`tokengate identity` as a user runs it: what its options do to a real process.

    --public-url        the URLs its issuers publish (default: http:// + the listen address)
    --in-memory         nothing on disk (else --data, by default ./tokengate-identity.db)
    --data              a `~` in it is the home directory, even where no shell expanded it
    --admin-token       the bearer token for /v1 (else one is generated and printed)

Each scenario's server starts once, in an empty working directory of its own, and every test
of that scenario asks it something.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port
from tests.test_cli import tokengate, wait_http

SEED = Path(__file__).resolve().parents[2] / "config" / "identity-seed.yaml"
ISSUER_ID = "appointmentsdev1"  # the seed's auth server
SERVER_ID = "6a2b5c7d-1e3f-4a5b-8c9d-0e1f2a3b4c5d"  # its id
PUBLIC_URL = "https://id.example.test/prefix"
FLAG_TOKEN, ENV_TOKEN = "token-from-the-flag", "token-from-the-environment"
DEFAULT_DB = "tokengate-identity.db"


@dataclass(frozen=True, slots=True)
class Identity:
    port: int
    cwd: Path  # the process's working directory, empty when it started
    stdout: Path  # what it printed (kept out of cwd)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def discovery(self) -> dict[str, Any]:
        status, body = get(f"{self.base}/{ISSUER_ID}/auth/.well-known/openid-configuration")
        assert status == 200, body
        return body

    def auth_servers(self, token: str) -> int:
        """The status of `GET /v1/auth-servers` with `token`."""
        return get(f"{self.base}/v1/auth-servers", token=token)[0]


def get(url: str, *, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http only
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def run_identity(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Identity]]:
    """Starts `tokengate identity *args` (env: extra variables) and stops all it started."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Identity:
        port = free_port()
        cwd = tmp_path_factory.mktemp("cwd")
        stdout = tmp_path_factory.mktemp("out") / "stdout.txt"
        # Only the variables the scenario sets: a TOKENGATE_* in the test's own environment
        # would change what is being tested.
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENGATE_")}
        command = [sys.executable, "-m", "tokengate", "identity", "--listen", f"127.0.0.1:{port}"]
        with stdout.open("w") as out:
            process = subprocess.Popen(
                [*command, *args],
                cwd=cwd,
                env={**base_env, **(env or {})},
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
            )
        started.append(process)
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        return Identity(port, cwd, stdout)

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def flagged(run_identity: Callable[..., Identity]) -> Identity:
    """Every option as a flag."""
    return run_identity(
        "--seed",
        str(SEED),
        "--public-url",
        PUBLIC_URL,
        "--in-memory",
        "--admin-token",
        FLAG_TOKEN,
        env={"PYTHONUNBUFFERED": ""},  # stdout buffered, as it is for a user: flushes matter
    )


@pytest.fixture(scope="module")
def from_env(run_identity: Callable[..., Identity]) -> Identity:
    """Options from the environment; no --public-url."""
    return run_identity(
        "--seed",
        str(SEED),
        env={"TOKENGATE_IN_MEMORY": "1", "TOKENGATE_ADMIN_TOKEN": ENV_TOKEN},
    )


@pytest.fixture(scope="module")
def defaults(run_identity: Callable[..., Identity]) -> Identity:
    """Nothing but --listen: no --data, --in-memory or --admin-token."""
    return run_identity(env={"PYTHONUNBUFFERED": ""})  # buffered, as for a user (see flagged)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def in_home(run_identity: Callable[..., Identity], home: Path) -> Identity:
    """TOKENGATE_DATA under `~`, as a compose file or a quoted assignment leaves it."""
    return run_identity(
        "--seed",
        str(SEED),
        "--admin-token",
        FLAG_TOKEN,
        env={"HOME": str(home), "TOKENGATE_DATA": "~/state/identity.db"},
    )


def test_public_url_starts_every_url_the_issuer_publishes(flagged: Identity) -> None:
    issuer = f"{PUBLIC_URL}/{ISSUER_ID}/auth"
    discovery = flagged.discovery()  # served on the listen address all the same
    assert discovery["issuer"] == issuer
    assert discovery["jwks_uri"] == f"{issuer}/.well-known/jwks"
    assert discovery["token_endpoint"] == f"{issuer}/oauth/token"
    status, listing = get(f"{flagged.base}/v1/auth-servers", token=FLAG_TOKEN)
    assert status == 200
    assert [server["issuer"] for server in listing["data"]] == [issuer]


def test_seeded_auth_servers_are_printed_once_it_answers_and_a_given_token_is_not(
    flagged: Identity,
) -> None:
    assert flagged.stdout.read_text() == (
        f"seeded auth server 'Appointments Dev': issuer {PUBLIC_URL}/{ISSUER_ID}/auth\n"
    )


def test_without_public_url_issuer_urls_start_with_http_and_the_listen_address(
    from_env: Identity,
) -> None:
    issuer = f"http://127.0.0.1:{from_env.port}/{ISSUER_ID}/auth"
    discovery = from_env.discovery()
    assert discovery["issuer"] == issuer
    assert discovery["jwks_uri"] == f"{issuer}/.well-known/jwks"
    assert discovery["token_endpoint"] == f"{issuer}/oauth/token"


def test_in_memory_flag_writes_nothing_to_disk(flagged: Identity) -> None:
    assert flagged.discovery()["issuer"]  # seeded and serving
    assert sorted(path.name for path in flagged.cwd.iterdir()) == []


def test_in_memory_environment_variable_writes_nothing_to_disk(from_env: Identity) -> None:
    assert from_env.discovery()["issuer"]  # seeded and serving
    assert sorted(path.name for path in from_env.cwd.iterdir()) == []


def test_without_in_memory_or_data_the_default_database_is_in_the_working_directory(
    defaults: Identity,
) -> None:
    names = {path.name for path in defaults.cwd.iterdir()}
    assert DEFAULT_DB in names
    assert names <= {DEFAULT_DB, f"{DEFAULT_DB}-wal", f"{DEFAULT_DB}-shm"}


def test_admin_token_flag_opens_the_management_api(flagged: Identity) -> None:
    assert flagged.auth_servers(FLAG_TOKEN) == 200
    assert flagged.auth_servers("wrong-token") == 401
    assert flagged.auth_servers(ENV_TOKEN) == 401


def test_admin_token_environment_variable_opens_the_management_api(from_env: Identity) -> None:
    assert from_env.auth_servers(ENV_TOKEN) == 200
    assert from_env.auth_servers("wrong-token") == 401
    assert from_env.auth_servers(FLAG_TOKEN) == 401


def test_without_an_admin_token_one_is_generated_printed_and_opens_the_management_api(
    defaults: Identity,
) -> None:
    # Printed (and flushed) before the server listens, so it is there once /healthz answers.
    printed = re.findall(r"^admin token \(.*\): (\S+)$", defaults.stdout.read_text(), re.M)
    assert len(printed) == 1, defaults.stdout.read_text()
    (token,) = printed
    assert len(token) >= 24  # generated, not a fixed word
    assert defaults.auth_servers(token) == 200
    assert defaults.auth_servers(token[:-1]) == 401
    assert defaults.auth_servers(FLAG_TOKEN) == 401


@pytest.mark.parametrize(("listen", "shown"), [("127.0.0.1", "127.0.0.1"), ("[::1]", "[::1]")])
def test_listen_port_0_urls_and_log_name_the_port_it_took(
    tmp_path: Path, listen: str, shown: str
) -> None:
    """`--listen 127.0.0.1:0` takes a free port: without --public-url the issuers' URLs (and
    the tokens' `iss`) are on that port, and the log names it, never port 0 (an IPv6 address
    in brackets, as in a URL: `::1:9000` would not say which part is the port)."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENGATE_")}
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "tokengate", "identity", "--listen", f"{listen}:0"]
    args = ["--in-memory", "--admin-token", FLAG_TOKEN, "--seed", str(SEED)]
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [*command, *args], cwd=tmp_path, env=base_env, stdout=out, stderr=err, text=True
        )
    try:
        end = time.monotonic() + 30
        logged = rf"listening on {re.escape(shown)}:(\d+) "
        while (found := re.search(logged, stderr.read_text())) is None:
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < end, stderr.read_text()
            time.sleep(0.1)
        port = int(found[1])
        assert port != 0, stderr.read_text()
        wait_http(f"http://{shown}:{port}/healthz", process)
        issuer = f"http://{shown}:{port}/{ISSUER_ID}/auth"
        status, discovery = get(f"{issuer}/.well-known/openid-configuration")
        assert (status, discovery["issuer"]) == (200, issuer)
        assert f"issuer {issuer}\n" in stdout.read_text()
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_it_listens_on_the_address_given_and_on_no_other(tmp_path: Path) -> None:
    """--listen 127.0.0.2:PORT: the management API is not reachable on the host's other
    addresses (127.0.0.1:PORT refuses), as nginx's `listen 127.0.0.2:PORT` would."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENGATE_")}
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tokengate", "identity", "--listen", f"127.0.0.2:{port}"),
            *("--in-memory", "--admin-token", FLAG_TOKEN),
        ],
        cwd=tmp_path,
        env=base_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.2:{port}/healthz", process)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        process.terminate()
        process.communicate(timeout=15)


def test_data_under_a_tilde_is_in_the_home_directory_and_rotate_keys_finds_it(
    in_home: Identity, home: Path
) -> None:
    assert in_home.auth_servers(FLAG_TOKEN) == 200
    assert (home / "state" / "identity.db").is_file()
    assert sorted(path.name for path in in_home.cwd.iterdir()) == []  # no `./~` directory
    env = {"HOME": str(home), "TOKENGATE_DATA": "~/state/identity.db"}
    result = tokengate("identity", "rotate-keys", SERVER_ID, env=env, cwd=in_home.cwd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("new signing key ")
