"""`tokengate run` as a user runs it: a real process on free ports, its panel, Ctrl-C, its errors.
And the shipped config/kong.yaml under `tokengate gateway` alone."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import KONG_YAML, ROOT, SEED
from tests.ports import busy_port, free_port
from tests.test_cli import tokengate, wait_ready
from tokengate.identity.store import Store

PANEL_END = "No token needed:"


class Running:
    """A `tokengate run` process whose stdout is collected by a thread, line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tokengate", "run", *args],
            cwd=ROOT,  # the defaults, config/kong.yaml and config/identity-seed.yaml, are relative
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def panel(self, deadline: float = 20) -> str:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if any(line.startswith(PANEL_END) for line in self.lines):
                return "".join(self.lines)
            if self.process.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"exited early: {self.lines} {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"no panel within {deadline} s: {self.lines}")

    def stderr(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read() if self.process.poll() is not None else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def run_on_free_ports(*args: str, env: dict[str, str] | None = None) -> tuple[Running, int, int]:
    """`tokengate run` with every listener on a free port (the identity server's set through
    its environment variable, as a user may); the process, the proxy and the identity ports."""
    proxy, status, identity, echo = (free_port() for _ in range(4))
    running = Running(
        *("--listen", f"127.0.0.1:{proxy}", "--status-listen", f"127.0.0.1:{status}"),
        *("--echo-listen", f"127.0.0.1:{echo}", *args),
        env={"TOKENGATE_IDENTITY_LISTEN": f"127.0.0.1:{identity}", **(env or {})},
    )
    return running, proxy, identity


def test_run_prints_a_panel_whose_curl_works_and_ctrl_c_exits_0() -> None:
    running, proxy, identity = run_on_free_ports()
    try:
        panel = running.panel()
        assert f"identity API     http://127.0.0.1:{identity}/v1/auth-servers" in panel
        assert f"issuer           http://127.0.0.1:{identity}/appointmentsdev1/auth" in panel
        found = re.search(r'curl -i (\S+) -H "Authorization: Bearer (\S+)"', panel)
        assert found is not None, panel
        url, token = found.groups()
        assert url == f"http://127.0.0.1:{proxy}/anything"
        bearer = {"Authorization": f"Bearer {token}"}
        request = urllib.request.Request(url, headers=bearer)  # noqa: S310 - http, checked above
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            assert resp.status == 200
            echoed = json.load(resp)
        assert ["X-Test-Claim", "test"] in echoed["headers"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)  # noqa: S310 - http only
        assert refused.value.code == 401
        refused.value.close()

        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=15) == 0
        assert "Traceback" not in running.stderr()
    finally:
        running.kill()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http only
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def _eventually_status(url: str, status: int, deadline: float = 10) -> None:
    end = time.monotonic() + deadline
    while (seen := _get(url)) != status:
        assert time.monotonic() < end, f"{url}: {seen}, never {status}"
        time.sleep(0.1)


def test_sighup_reads_kong_yaml_again_retargeted_and_keeps_serving_on_a_bad_one(
    tmp_path: Path,
) -> None:
    """As `tokengate gateway` does: an edited kong.yaml is served after SIGHUP, its default
    origins moved to where the stack listens (the echo here is not on 9100); an invalid edit
    is logged and the running config kept. The stack never stops for it."""
    config = tmp_path / "kong.yaml"
    shipped = (ROOT / "config" / "kong.yaml").read_text()
    config.write_text(shipped)
    running, proxy, _ = run_on_free_ports("--config", str(config))
    try:
        running.panel()
        added = f"http://127.0.0.1:{proxy}/added"
        assert _get(added) == 404
        route = '      - name: added\n        paths: ["/added"]\n        strip_path: false\n'
        config.write_text(shipped.replace("    routes:\n", "    routes:\n" + route, 1))
        running.process.send_signal(signal.SIGHUP)
        _eventually_status(added, 200)  # served by the echo upstream, on its own port

        config.write_text(shipped.replace("paths:", "pathz:", 1))
        running.process.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert running.process.poll() is None
        assert _get(added) == 200  # the last good config still serves

        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=15) == 0
        stderr = running.stderr()
        assert f"{config} not reloaded (2 error(s)); still serving configuration 2" in stderr
        assert f"{config}: services[0].routes[0].pathz: unknown field" in stderr
        assert "Traceback" not in stderr
    finally:
        running.kill()


def test_a_port_in_use_names_the_port_and_its_flag() -> None:
    with busy_port() as port:
        result = tokengate(
            "run",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--status-listen",
            f"127.0.0.1:{free_port()}",
            "--identity-listen",
            f"127.0.0.1:{free_port()}",
            "--echo-listen",
            f"127.0.0.1:{port}",
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"tokengate run: cannot listen on 127.0.0.1:{port}: address already in use; "
        "choose another address with --echo-listen"
    )


def test_every_port_in_use_is_named_at_once() -> None:
    """Two ports taken (another `tokengate run`, say): both named, so that moving one does not
    just reveal the next."""
    with busy_port() as identity, busy_port() as status:
        result = tokengate(
            "run",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--status-listen",
            f"127.0.0.1:{status}",
            "--identity-listen",
            f"127.0.0.1:{identity}",
            "--echo-listen",
            f"127.0.0.1:{free_port()}",
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"tokengate run: cannot listen on 127.0.0.1:{identity}: address already in use; "
        "choose another address with --identity-listen",
        f"tokengate run: cannot listen on 127.0.0.1:{status}: address already in use; "
        "choose another address with --status-listen",
    ]


@pytest.mark.parametrize(
    "broken", [{"config", "seed"}, {"seed"}, {"config"}], ids=["both", "seed", "config"]
)
def test_config_and_seed_errors_are_reported_together_and_exit_2(
    tmp_path: Path, broken: set[str]
) -> None:
    config, seed = tmp_path / "kong.yaml", tmp_path / "seed.yaml"
    bad_config = '_format_version: "3.0"\nservices: [{name: s, url: "ftp://x"}]\n'
    config.write_text(bad_config if "config" in broken else KONG_YAML.read_text())
    seed.write_text("auth_servers: [{name: x}]\n" if "seed" in broken else SEED.read_text())
    result = tokengate("run", "--config", str(config), "--seed", str(seed))
    assert result.returncode == 2
    said = result.stderr
    assert (f"{config}: services[0].url: scheme must be http or https" in said) == (
        "config" in broken
    )
    assert (f"{seed}: auth_servers[0].audience: is required" in said) == ("seed" in broken)
    assert RELATIVE not in result.stderr  # both files were found
    assert "Traceback" not in result.stderr


RELATIVE = (
    "tokengate run: --config and --seed are relative to the current directory "
    "(config/ is in the repository root)\n"
)


@pytest.mark.parametrize("seed", [None, SEED], ids=["neither found", "the seed found"])
def test_a_file_not_found_says_the_paths_are_relative_to_the_current_directory(
    tmp_path: Path, seed: Path | None
) -> None:
    """Run outside the repository root, the defaults (config/kong.yaml and
    config/identity-seed.yaml) are not found: after the error, the reason."""
    result = tokengate("run", *(() if seed is None else ("--seed", str(seed))), cwd=tmp_path)
    assert result.returncode == 2
    assert "config/kong.yaml: cannot read file: No such file or directory" in result.stderr
    assert result.stderr.endswith(RELATIVE)
    assert "Traceback" not in result.stderr


def test_a_warning_of_kong_yaml_is_a_log_record_in_the_format_asked(tmp_path: Path) -> None:
    """As the gateway's: with --log-format json, stderr is JSON lines, the warnings too."""
    config = tmp_path / "kong.yaml"
    config.write_text(
        KONG_YAML.read_text().replace(
            'paths: ["/public"]', 'paths: ["/public"]\n        plugins: [{name: key-auth}]'
        )
    )
    running, _, _ = run_on_free_ports(
        *("--config", str(config), "--ignore-plugins", "key-auth", "--log-format", "json")
    )
    try:
        running.panel()
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=15) == 0
        records = [json.loads(line) for line in running.stderr().splitlines()]
    finally:
        running.kill()
    warning = f"{config}: services[0].routes[0].plugins[0]: plugin 'key-auth' is not run"
    assert [
        (record["level"], record["logger"])
        for record in records
        if str(record["message"]).startswith(warning)
    ] == [("WARNING", "tokengate.config")]


def test_a_metrics_directory_from_the_environment_is_ignored_with_a_warning(
    tmp_path: Path,
) -> None:
    """As for `tokengate gateway`: PROMETHEUS_MULTIPROC_DIR (left from another setup) is not
    written to, and the user is told why."""
    stale = tmp_path / "multiproc"
    stale.mkdir()
    running, proxy, _ = run_on_free_ports(env={"PROMETHEUS_MULTIPROC_DIR": str(stale)})
    try:
        running.panel()
        assert _get(f"http://127.0.0.1:{proxy}/public/x") == 200  # counted somewhere
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=15) == 0
        stderr = running.stderr()
    finally:
        running.kill()
    assert f"PROMETHEUS_MULTIPROC_DIR={stale} is ignored" in stderr
    assert list(stale.iterdir()) == []


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_the_shipped_kong_yaml_alone_answers_503_on_the_protected_route() -> None:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 9000)) == 0:
            pytest.skip("something listens on 127.0.0.1:9000, the shipped issuer's address")
    proxy, status = free_port(), free_port()
    # Well formed, so the gateway gets as far as looking for the key to check it with.
    token = ".".join(
        [_b64(b'{"alg":"RS256","kid":"k1"}'), _b64(b'{"sub":"x"}'), _b64(b"\x00" * 256)]
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate",
            "gateway",
            "--config",
            str(KONG_YAML),
            "--listen",
            f"127.0.0.1:{proxy}",
            "--status-listen",
            f"127.0.0.1:{status}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(status, process)
        url = f"http://127.0.0.1:{proxy}/anything"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)  # noqa: S310 - http only
        assert caught.value.code == 503  # the issuer is not running: no key was ever loaded
        assert caught.value.headers["Retry-After"]
        caught.value.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.communicate()


def test_data_and_ignore_plugins_hold_across_a_reload(tmp_path: Path) -> None:
    """`run --data` keeps the identity server's database in that file, through a SIGHUP (which
    reloads kong.yaml, not the identity server); `--ignore-plugins` holds for the reload too, as
    for `tokengate gateway`: a kong.yaml that still has the plugin is served again."""
    config, data = tmp_path / "kong.yaml", tmp_path / "id.db"
    shipped = (ROOT / "config" / "kong.yaml").read_text() + "plugins:\n  - name: key-auth\n"
    config.write_text(shipped)
    args = ("--config", str(config), "--data", str(data), "--ignore-plugins", "key-auth")
    running, proxy, identity = run_on_free_ports(*args, "--admin-token", "t0ken")
    try:
        running.panel()
        servers = f"http://127.0.0.1:{identity}/v1/auth-servers"
        created = urllib.request.Request(
            servers,
            data=json.dumps({"name": "Kept", "audience": "kept"}).encode(),
            headers={"Authorization": "Bearer t0ken", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(created, timeout=5) as resp:  # noqa: S310
            assert resp.status == 201
        route = '      - name: added\n        paths: ["/added"]\n        strip_path: false\n'
        config.write_text(shipped.replace("    routes:\n", "    routes:\n" + route, 1))
        running.process.send_signal(signal.SIGHUP)
        _eventually_status(f"http://127.0.0.1:{proxy}/added", 200)  # key-auth ignored again
        listed = urllib.request.Request(servers, headers={"Authorization": "Bearer t0ken"})
        with urllib.request.urlopen(listed, timeout=5) as resp:  # noqa: S310 - http only
            names = [server["name"] for server in json.load(resp)["data"]]
        assert "Kept" in names
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(timeout=15) == 0
        stderr = running.stderr()
        assert "controls access" not in stderr and "Traceback" not in stderr
    finally:
        running.kill()
    with Store.open(data) as store:  # on disk, where --data said
        assert "Kept" in [server.name for server in store.list_auth_servers()]
