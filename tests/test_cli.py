"""The command line as a user runs it: real processes, exit codes, messages."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import cli_reference
from tests.identity.support import pooled_key
from tests.ports import busy_port, free_port
from tokengate import __version__
from tokengate.cli import main
from tokengate.identity.store import Store

GOOD = """\
_format_version: "3.0"
services:
  - name: svc
    url: http://127.0.0.1:9
    routes:
      - name: r
        paths: ["/x"]
plugins:
  - name: rate-limiting
"""

BAD = """\
_format_version: "3.0"
services:
  - name: svc
    url: ftp://example.com
    routes:
      - name: r
        pathz: ["/x"]
"""


def tokengate(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokengate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_version_is_printed_and_is_the_packages() -> None:
    result = tokengate("--version")
    assert (result.returncode, result.stdout) == (0, f"tokengate {__version__}\n")
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["version"] == __version__


def test_validate_accepts_a_good_file_and_prints_warnings(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(GOOD)
    result = tokengate("config", "validate", str(path))
    assert result.returncode == 0
    assert "ok (1 service, 1 route)" in result.stdout
    assert "rate-limiting" in result.stderr and "warning:" in result.stderr
    shipped = Path(__file__).resolve().parents[1] / "config" / "kong.yaml"
    result = tokengate("config", "validate", str(shipped))
    assert result.stdout == f"{shipped}: ok (2 services, 3 routes)\n"


def test_validate_reports_every_error_with_its_path_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(BAD)
    result = tokengate("config", "validate", str(path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert f"{path}: services[0].url: scheme must be http or https" in lines
    assert f"{path}: services[0].routes[0].pathz: unknown field (did you mean 'paths'?)" in lines
    assert "Traceback" not in result.stderr


KEY_AUTH = GOOD.replace("  - name: rate-limiting", "  - name: key-auth")


@pytest.mark.parametrize("command", ["config validate", "gateway --config"])
def test_an_access_plugin_is_refused_unless_ignored_by_name(tmp_path: Path, command: str) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(KEY_AUTH)
    args = (*command.split(), str(path))
    refused = tokengate(*args)
    assert refused.returncode == 2
    assert f"{path}: plugins[0].name: plugin 'key-auth' controls access in Kong" in refused.stderr
    assert "--ignore-plugins key-auth" in refused.stderr and "Traceback" not in refused.stderr
    if command == "config validate":  # (the gateway would start serving: tested end to end)
        accepted = tokengate(*args, env={"TOKENGATE_IGNORE_PLUGINS": "rate-limiting, key-auth"})
        assert accepted.returncode == 0, accepted.stderr
        assert "plugin 'key-auth' is not run (--ignore-plugins)" in accepted.stderr
        flagged = tokengate(*args, "--ignore-plugins", "key-auth")
        assert flagged.returncode == 0, flagged.stderr


def test_validate_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = tokengate("config", "validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("gateway",),  # --config is required
        ("gateway", "--config", "x.yaml", "--listen", "nowhere"),
        ("gateway", "--config", "x.yaml", "--workers", "0"),
        ("gateway", "--config", "x.yaml", "--log-format", "xml"),
        ("identity", "--in-memory", "--log-format", "xml"),
        ("frobnicate",),
    ],
)
def test_bad_usage_exits_2(args: tuple[str, ...]) -> None:
    result = tokengate(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_bad_environment_value_names_the_variable() -> None:
    result = tokengate("gateway", "--config", "x.yaml", env={"TOKENGATE_LISTEN": "nowhere"})
    assert result.returncode == 2
    assert "TOKENGATE_LISTEN" in result.stderr


def test_bad_access_log_switch_in_the_environment_names_the_variable() -> None:
    result = tokengate("gateway", "--config", "x.yaml", env={"TOKENGATE_ACCESS_LOG": "maybe"})
    assert result.returncode == 2
    assert "TOKENGATE_ACCESS_LOG" in result.stderr and "Traceback" not in result.stderr


def test_gateway_with_bad_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(BAD)
    result = tokengate("gateway", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: services[0].url: scheme must be http or https" in result.stderr


def wait_ready(port: int, process: subprocess.Popen[str], deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gateway never became ready")


def test_gateway_reads_options_from_the_environment_and_stops_on_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(GOOD)
    proxy, status = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate", "gateway"],
        env={
            **os.environ,
            "TOKENGATE_CONFIG": str(path),
            "TOKENGATE_LISTEN": f"127.0.0.1:{proxy}",
            "TOKENGATE_STATUS_LISTEN": f"127.0.0.1:{status}",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(status, process)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{proxy}/nothing-here", timeout=5)
        assert caught.value.code == 404
        caught.value.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("flag", ["--listen", "--status-listen"])
def test_port_in_use_names_the_port_and_its_flag_alone(
    tmp_path: Path, flag: str, workers: str
) -> None:
    path = tmp_path / "kong.yaml"
    # An issuer nobody serves: its key fetch must not start before both ports are bound.
    issuer = f"http://127.0.0.1:{free_port()}"
    path.write_text(GOOD + f"  - name: openid-connect\n    config: {{issuer: '{issuer}'}}\n")
    with busy_port() as port:
        addresses = {"--listen": f"127.0.0.1:{free_port()}"}
        addresses["--status-listen"] = f"127.0.0.1:{free_port()}"
        addresses[flag] = f"127.0.0.1:{port}"
        argv = ["--config", str(path), "--workers", workers]
        result = tokengate("gateway", *argv, *itertools.chain(*addresses.items()))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"tokengate gateway: cannot listen on 127.0.0.1:{port}: address already in use; "
        f"choose another address with {flag}"
    )
    assert "Traceback" not in result.stderr
    assert "fetch failed" not in result.stderr, result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_another_program_holds_with_so_reuseport_is_in_use_too(
    tmp_path: Path, workers: str
) -> None:
    """The workers share their port with SO_REUSEPORT, but not with another program that set it
    too (an earlier tokengate still running, say): it would take part of the connections."""
    path = tmp_path / "kong.yaml"
    path.write_text(GOOD)
    with busy_port(reuse_port=True) as port:
        argv = ["--config", str(path), "--workers", workers, "--listen", f"127.0.0.1:{port}"]
        try:
            result = tokengate(
                "gateway", *argv, "--status-listen", f"127.0.0.1:{free_port()}", timeout=15
            )
        except subprocess.TimeoutExpired:  # it served, beside the other program
            pytest.fail(f"port {port} was shared with the program holding it")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"tokengate gateway: cannot listen on 127.0.0.1:{port}: address already in use; "
        "choose another address with --listen"
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_config_from_a_pipe_is_read_once(tmp_path: Path, workers: str) -> None:
    """`--config <(envsubst < kong.yaml)`: a pipe gives its text once, so the workers serve the
    text the command read and checked (a second read found it empty)."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as writer:
        writer.write(GOOD)
    proxy, status = free_port(), free_port()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokengate", "gateway", "--config", f"/dev/fd/{read_end}",
             "--workers", workers, "--listen", f"127.0.0.1:{proxy}",
             "--status-listen", f"127.0.0.1:{status}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=(read_end,),
        )  # fmt: skip
    finally:
        os.close(read_end)
    err = served_then_stopped(process, status)
    assert "Traceback" not in err, err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_the_last_run_left_connections_on_is_free(tmp_path: Path, workers: str) -> None:
    """A gateway restarted at once finds its predecessor's closed connections still on the port
    (TIME_WAIT, for a minute): the port is free all the same, as for nginx and every server
    that sets SO_REUSEADDR, and the check before the workers start says so too."""
    with socket.socket() as predecessor:
        predecessor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio sets it
        predecessor.bind(("127.0.0.1", 0))
        predecessor.listen()
        port = predecessor.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            served, _ = predecessor.accept()
            served.close()  # the server side closes first: its end of it stays on the port
    process, _, status = gateway_with_flags(
        tmp_path, "--workers", workers, "--listen", f"127.0.0.1:{port}"
    )
    err = served_then_stopped(process, status)
    assert "cannot listen" not in err and "Traceback" not in err, err


def stopped_by_sigterm(process: subprocess.Popen[str], timeout: float = 20) -> tuple[str, str]:
    """SIGTERM to `process`, which must exit 0 within `timeout` (else it is killed); its stdout
    and stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=timeout)
    finally:
        process.kill()
        out, err = process.communicate()
    assert code == 0, err
    return out, err


def served_then_stopped(process: subprocess.Popen[str], status: int) -> str:
    """Wait for the gateway to serve, stop it with SIGTERM (it must exit 0); its stderr."""
    try:
        wait_ready(status, process)
    finally:
        err = stopped_by_sigterm(process)[1]
    return err


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.2",
        # IPv6 alone (IPV6_V6ONLY, as asyncio's and uvloop's listeners, and nginx's
        # `listen [::]:80`, set it): the port's IPv4 side is another matter.
        pytest.param("[::]", marks=pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")),
    ],
)
def test_a_port_another_program_holds_on_another_address_is_free_on_this_one(
    tmp_path: Path, workers: str, host: str
) -> None:
    with busy_port() as port:  # on 127.0.0.1
        process, _, status = gateway_with_flags(
            tmp_path, "--workers", workers, "--listen", f"{host}:{port}"
        )
        err = served_then_stopped(process, status)
    assert "cannot listen" not in err and "Traceback" not in err, err


def test_identity_on_a_busy_port_says_so_and_shows_no_admin_token() -> None:
    """A generated admin token is printed once the server listens: not for a server that is
    not going to run."""
    with busy_port() as port:
        result = tokengate("identity", "--in-memory", "--listen", f"127.0.0.1:{port}")
    assert_identity_cannot_listen(result, f"127.0.0.1:{port}", "address already in use")


def assert_identity_cannot_listen(
    result: subprocess.CompletedProcess[str], address: str, reason: str
) -> None:
    """Exit 1, the address, the errno's words and the option to change, as the gateway says
    it; and no admin token shown for a server that is not going to run."""
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"tokengate identity: cannot listen on {address}: {reason}; choose another with --listen"
    )
    assert "admin token" not in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flag", ["--listen", "--status-listen"])
def test_port_0_with_several_workers_is_refused(flag: str, tmp_path: Path) -> None:
    """Each worker binds for itself: port 0 would give every worker a port of its own, none
    shared, which is not what --workers means."""
    path = tmp_path / "kong.yaml"
    path.write_text(GOOD)
    other = "--status-listen" if flag == "--listen" else "--listen"
    result = tokengate(
        "gateway",
        *("--config", str(path), "--workers", "2"),
        *(flag, "127.0.0.1:0", other, f"127.0.0.1:{free_port()}"),
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tokengate gateway: error: {flag} 127.0.0.1:0 with --workers 2: every worker would "
        "take a port of its own; give a port, or run --workers 1"
    )


@pytest.mark.parametrize("command", ["identity", "run"])
def test_a_damaged_identity_database_is_said_not_a_traceback(command: str, tmp_path: Path) -> None:
    """A data file whose pages past the first are garbage opens (SQLite reads pages lazily),
    then fails as the seed is written: one line naming the file and why, exit 1."""
    data = tmp_path / "id.db"
    seed = Path(__file__).resolve().parents[1] / "config" / "identity-seed.yaml"
    with Store.open(data, key_factory=pooled_key) as store:
        for number in range(200):
            store.create_auth_server(name=f"server {number}", audience="a")
    with data.open("r+b") as file:
        file.seek(4096 * 3)
        file.write(b"\xff" * 8192)
    ports = [f"127.0.0.1:{free_port()}" for _ in range(4)]
    listen = {
        "identity": ["--listen", ports[0]],
        "run": [
            *("--listen", ports[0], "--status-listen", ports[1]),
            *("--identity-listen", ports[2], "--echo-listen", ports[3]),
        ],
    }[command]
    result = tokengate(command, "--data", str(data), "--seed", str(seed), *listen)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"tokengate {command}: cannot apply the seed to {data}: the identity database is "
        "damaged: database disk image is malformed"
    )


@pytest.mark.parametrize(
    "command",
    [("gateway", "1"), ("gateway", "2"), ("identity", None), ("run", None)],
    ids=["gateway", "gateway-2-workers", "identity", "run"],
)
def test_a_listen_host_that_does_not_resolve_is_said_in_words(
    command: tuple[str, str | None], tmp_path: Path
) -> None:
    """The resolver's own words (RFC 6761: .invalid never resolves), not "unknown error -2",
    the errno-style text of its EAI_ code."""
    name, workers = command
    config = tmp_path / "kong.yaml"
    config.write_text(GOOD)
    extra = {
        "gateway": ["--config", str(config), "--workers", str(workers)],
        "identity": ["--in-memory"],
        "run": [],
    }[name]
    result = tokengate(name, *extra, "--listen", "tokengate-test.invalid:18080")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tokengate {name}: cannot listen on tokengate-test.invalid:18080: ")
    assert "unknown error" not in last and "-2" not in last, last
    assert last.endswith(" --listen"), last


@pytest.mark.parametrize("command", ["gateway", "identity", "run"])
def test_an_ipv6_address_that_cannot_be_had_is_shown_in_brackets(
    command: str, tmp_path: Path
) -> None:
    """2001:db8::/32 is for documentation: no host has it (or no IPv6 at all)."""
    config = tmp_path / "kong.yaml"
    config.write_text(GOOD)
    extra = {"gateway": ["--config", str(config)], "identity": ["--in-memory"], "run": []}
    result = tokengate(command, *extra[command], "--listen", "[2001:db8::1]:18080")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tokengate {command}: cannot listen on [2001:db8::1]:18080: "), last


@pytest.mark.parametrize("command", ["gateway", "identity", "run"])
def test_a_busy_port_set_by_the_environment_names_the_variable(
    command: str, tmp_path: Path
) -> None:
    """TOKENGATE_LISTEN, exported for one command, is every command's --listen: the error says
    that the variable chose the port the user never typed."""
    config = tmp_path / "kong.yaml"
    config.write_text(GOOD)
    others = {
        "gateway": ["--config", str(config), "--status-listen", f"127.0.0.1:{free_port()}"],
        "identity": ["--in-memory"],
        "run": [
            *("--status-listen", f"127.0.0.1:{free_port()}"),
            *("--identity-listen", f"127.0.0.1:{free_port()}"),
            *("--echo-listen", f"127.0.0.1:{free_port()}"),
        ],
    }[command]
    with busy_port() as port:
        result = tokengate(command, *others, env={"TOKENGATE_LISTEN": f"127.0.0.1:{port}"})
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(f" --listen (TOKENGATE_LISTEN=127.0.0.1:{port} is set)")
    ), result.stderr
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr


@pytest.mark.parametrize(
    ("sig", "said"),
    [
        (signal.SIGTERM, "SIGTERM: stopping"),
        (signal.SIGHUP, "SIGHUP: stopping (tokengate identity has nothing to reload)"),
    ],
)
def test_identity_stops_cleanly_on_sigterm_and_sighup_and_says_so(
    sig: signal.Signals, said: str
) -> None:
    """A closed terminal's SIGHUP, or one meant as the gateway's reload, drains and exits 0 as
    SIGTERM does, rather than killing the process with its store open."""
    port = free_port()
    options = ["--in-memory", "--listen", f"127.0.0.1:{port}", "--admin-token", "t" * 32]
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate", "identity", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        process.send_signal(sig)
        assert process.wait(timeout=15) == 0
        stderr = process.communicate()[1]
        assert said in stderr
        assert "Traceback" not in stderr
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("port", ["9000", "0"])  # 0: the socket is taken before the app starts
def test_identity_on_an_address_not_of_this_host_names_it_and_its_flag(port: str) -> None:
    """As the gateway says it: the address, the errno's words and the option to change; and no
    admin token is shown for a server that is not going to run."""
    result = tokengate("identity", "--in-memory", "--listen", f"192.0.2.1:{port}")  # TEST-NET-1
    assert_identity_cannot_listen(result, f"192.0.2.1:{port}", "cannot assign requested address")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_address_not_of_this_host_is_named_once(tmp_path: Path, workers: str) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(GOOD)
    result = tokengate(
        "gateway",
        "--config",
        str(path),
        "--workers",
        workers,
        "--listen",
        "192.0.2.1:8000",  # TEST-NET-1: no interface of this machine has it
        "--status-listen",
        f"127.0.0.1:{free_port()}",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "tokengate gateway: cannot listen on 192.0.2.1:8000: cannot assign requested address; "
        "choose another address with --listen"
    )


def wait_http(url: str, process: subprocess.Popen[str], deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - http only
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def test_identity_serves_seeds_prints_its_token_and_rotates_keys(tmp_path: Path) -> None:
    seed = Path(__file__).resolve().parents[1] / "config" / "identity-seed.yaml"
    data = tmp_path / "id.db"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate",
            "identity",
            "--listen",
            f"127.0.0.1:{port}",
            "--data",
            str(data),
            "--seed",
            str(seed),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        discovery = (
            f"http://127.0.0.1:{port}/appointmentsdev1/auth/.well-known/openid-configuration"
        )
        with urllib.request.urlopen(discovery, timeout=5) as resp:
            assert resp.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        out = process.communicate()[0]
        assert "admin token" in out and "seeded auth server 'Appointments Dev'" in out
    finally:
        process.kill()
        process.communicate()
    assert oct(data.stat().st_mode & 0o777) == "0o600"
    result = tokengate(
        "identity", "--data", str(data), "rotate-keys", "6a2b5c7d-1e3f-4a5b-8c9d-0e1f2a3b4c5d"
    )
    assert result.returncode == 0, result.stderr
    assert "new signing key" in result.stdout
    # --data also after the subcommand, where `rotate-keys --help` shows it.
    result = tokengate(
        "identity", "rotate-keys", "--data", str(data), "6a2b5c7d-1e3f-4a5b-8c9d-0e1f2a3b4c5d"
    )
    assert result.returncode == 0, result.stderr
    assert "new signing key" in result.stdout
    result = tokengate("identity", "--data", str(data), "rotate-keys", "nope")
    assert result.returncode == 2 and "no auth server" in result.stderr


def test_rotate_keys_on_a_database_another_process_is_writing_says_so(tmp_path: Path) -> None:
    """Past SQLite's busy timeout (5 s) the write lock is still taken: one line, no traceback."""
    data = tmp_path / "id.db"
    with Store.open(data, key_factory=pooled_key) as store:
        server_id = store.create_auth_server(name="Demo", audience="a").id
    writer = sqlite3.connect(data, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        result = tokengate("identity", "--data", str(data), "rotate-keys", server_id)
    finally:
        writer.close()
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"tokengate identity: cannot rotate the keys in {data}: database is locked\n"
    )


def test_identity_publishes_its_public_url_and_takes_the_admin_token_given() -> None:
    seed = Path(__file__).resolve().parents[1] / "config" / "identity-seed.yaml"
    port = free_port()
    public = f"http://localhost:{port}"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tokengate", "identity", "--in-memory", "--seed", str(seed)),
            *("--listen", f"127.0.0.1:{port}", "--public-url", public, "--admin-token", "s3cret"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        admin = {"Authorization": "Bearer s3cret"}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/auth-servers", headers=admin)
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - http only
            assert resp.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        out = process.communicate()[0]
    finally:
        process.kill()
        process.communicate()
    assert f"issuer {public}/appointmentsdev1/auth" in out
    assert "admin token" not in out  # given, so not generated and printed


def test_identity_bad_seed_exits_2(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("auth_servers: [{name: x}]\n")
    result = tokengate("identity", "--in-memory", "--seed", str(seed))
    assert result.returncode == 2
    assert f"{seed}: auth_servers[0].audience: is required" in result.stderr


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all(isinstance(line, dict) for line in lines)
    return lines


def test_gateway_logs_json_lines_with_an_access_line_per_request(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(GOOD)
    proxy, status = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate", "gateway", "--config", str(path)],
        env={
            **os.environ,
            "TOKENGATE_LISTEN": f"127.0.0.1:{proxy}",
            "TOKENGATE_STATUS_LISTEN": f"127.0.0.1:{status}",
            "TOKENGATE_LOG_FORMAT": "json",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(status, process)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{proxy}/nothing?q=secret", timeout=5)
        caught.value.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        stderr = process.communicate()[1]
    finally:
        process.kill()
        process.communicate()
    lines = json_lines(stderr)  # every line, the config's warning too
    assert any(line["logger"] == "tokengate.config" for line in lines)
    assert any(line["logger"] == "tokengate.workers" for line in lines)
    (access,) = [line for line in lines if line["logger"] == "tokengate.access"]
    assert access["status"] == 404 and access["path"] == "/nothing"
    assert "secret" not in stderr


def gateway_with_flags(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], int, int]:
    """`tokengate gateway` on the GOOD config with `flags`: the process, its proxy and status
    ports (the caller waits for it to be ready, and kills it)."""
    path = tmp_path / "kong.yaml"
    path.write_text(GOOD)
    proxy, status = free_port(), free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tokengate", "gateway", "--config", str(path)),
            *("--listen", f"127.0.0.1:{proxy}", "--status-listen", f"127.0.0.1:{status}"),
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, proxy, status


def test_gateway_flags_reach_the_gateway_it_runs(tmp_path: Path) -> None:
    process, proxy, status = gateway_with_flags(
        tmp_path,
        *("--max-body-size", "4", "--shutdown-timeout", "3", "--no-access-log"),
        *("--log-format", "json"),
    )
    try:
        wait_ready(status, process)
        request = urllib.request.Request(f"http://127.0.0.1:{proxy}/x", data=b"12345")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310 - http only
        assert caught.value.code == 413  # --max-body-size 4
        caught.value.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        stderr = process.communicate()[1]
    finally:
        process.kill()
        process.communicate()
    messages = [line["message"] for line in json_lines(stderr)]
    assert "SIGTERM: draining (up to 3s for requests in progress)" in messages
    assert all(line["logger"] != "tokengate.access" for line in json_lines(stderr))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_log_format_reaches_every_worker(tmp_path: Path, workers: str) -> None:
    """With --workers 2 the workers log for themselves (the supervisor only starts them): their
    lines are JSON too."""
    process, _, status = gateway_with_flags(tmp_path, "--workers", workers, "--log-format", "json")
    lines = json_lines(served_then_stopped(process, status))
    listening = [line for line in lines if "listening on" in str(line["message"])]
    assert len(listening) == int(workers), lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_log_level_reaches_every_worker(tmp_path: Path, workers: str) -> None:
    """--log-level warning: each worker's info line ("listening on") is not logged, the config's
    warning is."""
    process, _, status = gateway_with_flags(
        tmp_path, "--workers", workers, "--log-level", "warning"
    )
    err = served_then_stopped(process, status)
    assert "plugin 'rate-limiting'" in err
    assert "listening on" not in err and " INFO " not in err, err


def closed_within(port: int, sent: bytes, seconds: float) -> bytes:
    """What the server answers to `sent` before it closes the connection, which it must do
    within `seconds`."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as client:
        client.sendall(sent)
        answer = b""
        end = time.monotonic() + seconds
        while chunk := client.recv(65536):  # a socket.timeout past `seconds` fails the test
            answer += chunk
            client.settimeout(max(end - time.monotonic(), 0.01))
        return answer


def test_gateway_timeout_flags_reach_the_gateway_it_runs(tmp_path: Path) -> None:
    """Each timeout given is the one the gateway keeps (its defaults are 10 s or more)."""
    process, proxy, status = gateway_with_flags(
        tmp_path,
        *("--client-header-timeout", "1", "--client-body-timeout", "1"),
        *("--keepalive-timeout", "4"),
    )
    try:
        wait_ready(status, process)
        closed_within(proxy, b"GET /x HTTP/1.1\r\nHost: x\r\n", 3)  # --client-header-timeout
        head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n1"
        assert b" 408 " in closed_within(proxy, head, 3)  # --client-body-timeout
        idle = closed_within(proxy, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 7)
        assert idle.startswith(b"HTTP/1.1 404 ")  # then idle: --keepalive-timeout
    finally:
        process.kill()
        process.communicate()


def identity_stderr(*flags: str) -> str:
    """What `tokengate identity --in-memory` with these flags writes to stderr between its
    start and a SIGTERM (exit 0) once it answers /healthz."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tokengate", "identity", "--in-memory", "--admin-token", "t"),
            *("--listen", f"127.0.0.1:{port}", *flags),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
    finally:
        err = stopped_by_sigterm(process)[1]
    return err


def test_identity_logs_json_lines() -> None:
    loggers = {line["logger"] for line in json_lines(identity_stderr("--log-format", "json"))}
    assert "tokengate.identity" in loggers
    # Its requests (the /healthz polls above) are not logged: aiohttp's access log is off.
    assert "aiohttp.access" not in loggers


def test_identity_log_level_warning_leaves_out_its_info_lines() -> None:
    stderr = identity_stderr("--log-level", "warning")
    assert "listening on" not in stderr and "SIGTERM: stopping" not in stderr, stderr


def test_readme_lists_every_option_of_every_command() -> None:
    """The README's option tables are the parser's own (tests/cli_reference.py renders them)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = text.index(cli_reference.START), text.index(cli_reference.END)
    written = text[start : end + len(cli_reference.END)]
    expected = cli_reference.render()
    assert written == expected, "paste `python -m tests.cli_reference` into the README"
    for flag in ("--workers", "--shutdown-timeout", "--log-format", "--identity-listen", "--seed"):
        assert f"`{flag}`" in written
    # Subcommands' own options too: `config validate --ignore-plugins`, `rotate-keys --data`.
    assert "`tokengate config validate`:" in written
    assert "`tokengate identity rotate-keys`:" in written


def test_abbreviated_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["gateway", "--config", "kong.yaml", "--worker", "2"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --worker" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--log-level", "loud", "--log-level: 'loud' is not one of debug, info, warning, error"),
        ("--log-format", "xml", "--log-format: 'xml' is not one of text, json"),
    ],
)
@pytest.mark.parametrize("command", [["gateway", "--config", "kong.yaml"], ["identity"], ["run"]])
def test_an_unknown_log_level_or_format_is_a_usage_error(
    command: list[str], flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
