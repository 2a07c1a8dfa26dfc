"""User mistakes on the command line: each is a message on stderr naming the option (or its
TOKENGATE_* variable) and what is wrong, exit 2, and nothing started; never a traceback, never
silently accepted. And a Ctrl-C before a command is running is exit 130, not a traceback.

Where the command would start a server if the mistake went through, the test parses only
(build_parser) or runs a real process with a timeout, so that a regression fails, not hangs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.test_cli import GOOD, tokengate, wait_http, wait_ready
from tokengate import __version__
from tokengate.addresses import overlap, show
from tokengate.cli import build_parser, main

UUID = "6a2b5c7d-1e3f-4a5b-8c9d-0e1f2a3b4c5d"


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Parse `argv` as `tokengate` would; it must be refused with exit 2, the usage and the
    error on stderr (stdout stays for what a command prints). Its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: tokengate")
    assert "Traceback" not in err
    return err


@pytest.fixture
def kong_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "kong.yaml"
    path.write_text(GOOD)
    return path


# -- 1. TOKENGATE_IN_MEMORY takes the words every switch takes ---------------------------------


@pytest.mark.parametrize("word", ["false", "no", "off", "0", "FALSE"])
def test_in_memory_false_words_in_the_environment_mean_off(
    word: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENGATE_IN_MEMORY", word)
    assert build_parser().parse_args(["identity"]).in_memory is False


@pytest.mark.parametrize("word", ["true", "yes", "on", "1"])
def test_in_memory_true_words_in_the_environment_mean_on(
    word: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENGATE_IN_MEMORY", word)
    assert build_parser().parse_args(["identity"]).in_memory is True


@pytest.mark.parametrize("word", ["maybe", ""])
@pytest.mark.parametrize(
    ("command", "variable", "flag"),
    [
        (["identity"], "TOKENGATE_IN_MEMORY", "--in-memory"),
        (["gateway", "--config", "k.yaml"], "TOKENGATE_ACCESS_LOG", "--access-log"),
    ],
)
def test_other_words_in_a_switch_variable_are_refused(
    word: str,
    command: list[str],
    variable: str,
    flag: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, word)
    assert (
        f"tokengate {command[0]}: error: {variable} (for {flag}): expected true or "
        f"false (or 1/0, yes/no, on/off), got {word!r}" in usage_error(capsys, *command)
    )


def test_in_memory_false_in_the_environment_keeps_the_database_on_disk(tmp_path: Path) -> None:
    data, port = tmp_path / "im.db", free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate", "identity", "--data", str(data)],
        env={
            **os.environ,
            "TOKENGATE_IN_MEMORY": "false",
            "TOKENGATE_LISTEN": f"127.0.0.1:{port}",
            "TOKENGATE_ADMIN_TOKEN": "t",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process)
        assert data.is_file()  # on disk, as --data says: not in memory
    finally:
        process.terminate()
        process.communicate(timeout=15)


def test_in_memory_maybe_in_the_environment_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    result = tokengate(
        "identity",
        "--data",
        str(tmp_path / "im.db"),
        "--listen",
        f"127.0.0.1:{free_port()}",
        env={"TOKENGATE_IN_MEMORY": "maybe"},
    )
    assert result.returncode == 2
    assert "TOKENGATE_IN_MEMORY (for --in-memory)" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--in-memory", "--data", "{db}"], {}),
        (["--in-memory"], {"TOKENGATE_DATA": "{db}"}),
        (["--in-memory", "--data", "{db}", "rotate-keys", "a1b2"], {}),
    ],
    ids=["flags", "environment", "rotate-keys"],
)
def test_in_memory_beside_data_exits_2_and_creates_nothing(
    tmp_path: Path, argv: list[str], env: dict[str, str]
) -> None:
    """One of the two would go unheeded: a server the user believes keeps its state, or one
    writing where they asked it not to."""
    db = str(tmp_path / "id.db")
    result = tokengate(
        "identity",
        "--listen",
        f"127.0.0.1:{free_port()}",
        *(a.format(db=db) for a in argv),
        env={k: v.format(db=db) for k, v in env.items()},
    )
    assert result.returncode == 2
    assert "--in-memory keeps nothing on disk, and --data" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- 2. numbers: ASCII digits only, and a message saying what is wanted ------------------------


@pytest.mark.parametrize(
    ("variable", "flag", "value", "wanted"),
    [
        ("TOKENGATE_WORKERS", "--workers", "²", "expected a whole number >= 1"),
        ("TOKENGATE_MAX_BODY_SIZE", "--max-body-size", "²", "expected a whole number >= 1"),
        ("TOKENGATE_WORKERS", "--workers", "٣", "expected a whole number >= 1"),
        ("TOKENGATE_LISTEN", "--listen", "127.0.0.1:²", "expected HOST:PORT"),
        ("TOKENGATE_STATUS_LISTEN", "--status-listen", "127.0.0.1:²", "expected HOST:PORT"),
        ("TOKENGATE_SHUTDOWN_TIMEOUT", "--shutdown-timeout", "²", "expected a number of seconds"),
    ],
)
def test_unicode_digits_in_the_environment_name_the_variable_and_exit_2(
    variable: str,
    flag: str,
    value: str,
    wanted: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, value)
    err = usage_error(capsys, "gateway", "--config", "k.yaml")
    assert f"tokengate gateway: error: {variable} (for {flag}): {wanted}" in err
    assert f"got {value!r}" in err


def test_too_many_workers_in_the_environment_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKENGATE_WORKERS", "99999999999999999999")
    err = usage_error(capsys, "gateway", "--config", "k.yaml")
    assert (
        "tokengate gateway: error: TOKENGATE_WORKERS (for --workers): expected at most 1024 "
        "worker processes, got '99999999999999999999'"
    ) in err


def test_unicode_digits_in_the_environment_are_no_traceback(kong_yaml: Path) -> None:
    result = tokengate("gateway", "--config", str(kong_yaml), env={"TOKENGATE_WORKERS": "²"})
    assert result.returncode == 2
    assert "TOKENGATE_WORKERS (for --workers): expected a whole number >= 1, got '²'" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--workers", "²", "--workers: expected a whole number >= 1, got '²'"),
        ("--workers", "0", "--workers: expected a whole number >= 1, got '0'"),
        # nginx spawns at most 1024 (NGX_MAX_PROCESSES); past memory, this was a MemoryError
        ("--workers", "1025", "--workers: expected at most 1024 worker processes, got '1025'"),
        ("--workers", "99999999999999999999", "--workers: expected at most 1024 worker"),
        ("--max-body-size", "²", "--max-body-size: expected a whole number >= 1, got '²'"),
        ("--max-body-size", "1e6", "--max-body-size: expected a whole number >= 1, got '1e6'"),
        ("--listen", "127.0.0.1:²", "--listen: expected HOST:PORT"),
        ("--keepalive-timeout", "²", "--keepalive-timeout: expected a number of seconds > 0"),
        ("--keepalive-timeout", "nan", "--keepalive-timeout: expected a number of seconds > 0"),
        ("--shutdown-timeout", "inf", "--shutdown-timeout: expected a number of seconds > 0"),
        ("--client-body-timeout", "1e999", "--client-body-timeout: expected a number of seconds"),
        ("--keepalive-timeout", "0", "--keepalive-timeout: expected a number of seconds > 0"),
        ("--keepalive-timeout", "٣", "--keepalive-timeout: expected a number of seconds > 0"),
        ("--shutdown-timeout", "-1", "--shutdown-timeout: expected a number of seconds > 0"),
        ("--client-send-timeout", "soon", "--client-send-timeout: expected a number of seconds"),
        ("--listen", "127.0.0.1:65536", "--listen: expected HOST:PORT"),
        ("--trusted-ips", "10.0.0.0/8,10.0.0.300", "'10.0.0.300' is not an IP address or CIDR"),
        ("--ignore-plugins", " , ", "--ignore-plugins: expected plugin names separated by commas"),
    ],
)
def test_bad_numbers_on_the_command_line_say_what_is_wanted(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, "gateway", "--config", "k.yaml", flag, value)
    assert message in err
    assert "invalid" not in err  # argparse's "invalid _positive_int value"


# -- 3. addresses: brackets hold an IPv6 address, closed ---------------------------------------


@pytest.mark.parametrize(
    "address",
    ["[]:18003", "[::1:18003", "::1]:18003", "::1:18003", "[127.0.0.1]:18003", "[zz]:1", "a b:1"],
)
@pytest.mark.parametrize("command", [["gateway", "--config", "k.yaml"], ["identity"], ["run"]])
def test_malformed_listen_addresses_are_refused(
    address: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, *command, "--listen", address)
    assert "--listen: expected HOST:PORT" in err and repr(address) in err


@pytest.mark.parametrize(
    ("flag", "value", "parsed"),
    [
        ("--workers", "1", 1),
        ("--workers", "1024", 1024),
        ("--max-connections", "1", 1),
        ("--client-header-timeout", "0.5", 0.5),
        ("--client-body-timeout", "2", 2.0),
        ("--trusted-ips", " 10.0.0.0/8, ::1 ,", (ip_network("10.0.0.0/8"), ip_network("::1"))),
        ("--trusted-ips", "", ()),
        ("--trusted-ips", "10.1.2.3/8", (ip_network("10.0.0.0/8"),)),  # host bits: the block
        ("--ignore-plugins", " key-auth , acl,", frozenset({"key-auth", "acl"})),
    ],
)
def test_good_values_on_the_command_line_are_kept(flag: str, value: str, parsed: object) -> None:
    args = build_parser().parse_args(["gateway", "--config", "k.yaml", flag, value])
    assert getattr(args, flag.lstrip("-").replace("-", "_")) == parsed


ADDRESS_OPTIONS = [
    (["gateway", "--config", "k.yaml"], "--listen"),
    (["gateway", "--config", "k.yaml"], "--status-listen"),
    (["identity"], "--listen"),
    (["run"], "--listen"),
    (["run"], "--status-listen"),
    (["run"], "--identity-listen"),
    (["run"], "--echo-listen"),
]


@pytest.mark.parametrize(("command", "flag"), ADDRESS_OPTIONS)
def test_every_address_option_takes_host_port_and_nothing_else(
    command: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args([*command, flag, "[::1]:8001"])
    assert getattr(args, flag.lstrip("-").replace("-", "_")) == ("::1", 8001)
    err = usage_error(capsys, *command, flag, "nowhere")
    assert f"argument {flag}: expected HOST:PORT" in err


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("[::1]:8000", ("::1", 8000)),
        (":8000", ("0.0.0.0", 8000)),
        ("localhost:0", ("localhost", 0)),
        ("10.1.2.3:65535", ("10.1.2.3", 65535)),
    ],
)
def test_well_formed_listen_addresses_are_kept(address: str, parsed: tuple[str, int]) -> None:
    args = build_parser().parse_args(["gateway", "--config", "k.yaml", "--listen", address])
    assert args.listen == parsed


@pytest.mark.parametrize("address", ["[]:{port}", "[::1:{port}"])
def test_a_malformed_listen_address_binds_nothing(kong_yaml: Path, address: str) -> None:
    port = free_port()
    try:
        result = tokengate(
            "gateway",
            "--config",
            str(kong_yaml),
            "--listen",
            address.format(port=port),
            "--status-listen",
            f"127.0.0.1:{free_port()}",
            timeout=15,
        )
    except subprocess.TimeoutExpired:  # it went on serving, on some address
        pytest.fail(f"{address} was accepted")
    assert result.returncode == 2
    assert "argument --listen: expected HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


# -- 4. one port, one listener -----------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("listen_host", ["127.0.0.1", "0.0.0.0"])
def test_listen_and_status_listen_on_the_same_port_exit_2_and_serve_nothing(
    kong_yaml: Path, workers: str, listen_host: str
) -> None:
    port = free_port()
    try:
        result = tokengate(
            "gateway",
            "--config",
            str(kong_yaml),
            "--listen",
            f"{listen_host}:{port}",
            "--status-listen",
            f"127.0.0.1:{port}",
            "--workers",
            workers,
            timeout=15,
        )
    except subprocess.TimeoutExpired:  # it served, proxy and status API on one port
        pytest.fail("--listen and --status-listen shared a port")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tokengate gateway: error: --status-listen 127.0.0.1:{port} takes the port of "
        f"--listen {listen_host}:{port}: each needs an address:port of its own"
    )


def test_the_same_port_through_the_environment_is_refused_too(kong_yaml: Path) -> None:
    port = free_port()
    result = tokengate(
        "gateway",
        "--config",
        str(kong_yaml),
        "--workers",
        "2",
        env={"TOKENGATE_LISTEN": f"127.0.0.1:{port}", "TOKENGATE_STATUS_LISTEN": f":{port}"},
        timeout=15,
    )
    assert result.returncode == 2
    assert "--status-listen 0.0.0.0" in result.stderr and "--listen 127.0.0.1" in result.stderr


@pytest.mark.parametrize(
    ("a", "b", "clash"),
    [
        (("127.0.0.1", 8000), ("127.0.0.1", 8000), True),
        (("0.0.0.0", 8000), ("127.0.0.1", 8000), True),  # the wildcard takes every address
        (("127.0.0.1", 8000), ("0.0.0.0", 8000), True),
        (("::", 8000), ("::1", 8000), True),
        (("localhost", 8000), ("127.0.0.1", 8000), True),  # what the name binds to
        (("127.0.0.1", 8000), ("127.0.0.1", 8001), False),
        (("127.0.0.2", 8000), ("127.0.0.1", 8000), False),
        (("::", 8000), ("0.0.0.0", 8000), False),  # IPv6 listeners are IPv6-only
        (("::1", 8000), ("127.0.0.1", 8000), False),
        (("127.0.0.1", 0), ("127.0.0.1", 0), False),  # port 0: each gets a free one
        (("no-such-host.invalid", 8000), ("0.0.0.0", 8000), False),  # fails when bound
    ],
)
def test_which_listeners_take_the_same_port(
    a: tuple[str, int], b: tuple[str, int], clash: bool
) -> None:
    assert overlap(a, b) is clash
    assert overlap(b, a) is clash


@pytest.mark.parametrize(
    ("address", "shown"),
    [(("127.0.0.1", 8000), "127.0.0.1:8000"), (("::1", 8000), "[::1]:8000")],
)
def test_an_address_is_shown_as_it_is_written_on_the_command_line(
    address: tuple[str, int], shown: str
) -> None:
    assert show(address) == shown


def test_run_refuses_two_listeners_on_one_port(tmp_path: Path) -> None:
    port = free_port()
    result = tokengate(
        "run",
        "--identity-listen",
        f"127.0.0.1:{port}",
        "--echo-listen",
        f"127.0.0.1:{port}",
        cwd=tmp_path,  # no config/ here: the check comes before any file is read
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"tokengate run: error: --echo-listen 127.0.0.1:{port} takes the port of "
        f"--identity-listen 127.0.0.1:{port}: each needs an address:port of its own"
    )


def test_the_same_port_on_different_addresses_is_allowed(kong_yaml: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate", "gateway", "--config", str(kong_yaml)],
        env={
            **os.environ,
            "TOKENGATE_LISTEN": f"127.0.0.2:{port}",
            "TOKENGATE_STATUS_LISTEN": f"127.0.0.1:{port}",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(port, process)  # the status API, on 127.0.0.1
    finally:
        process.terminate()
        process.communicate(timeout=15)


# -- 5. --public-url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "the scheme must be http or https"),
        ("ftp://x", "the scheme must be http or https"),
        ("//id.example.com", "the scheme must be http or https"),
        ("http://", "it has no host"),
        ("http:///path", "it has no host"),
        ("http://[::1", "an IPv6 host must be a valid address in brackets"),
        ("http://[zz]/", "an IPv6 host must be a valid address in brackets"),
        ("http://a:99999", "the port must be a number from 1 to 65535, not '99999'"),
        ("http://a:0", "the port must be a number from 1 to 65535, not '0'"),
        ("http://a:65536", "the port must be a number from 1 to 65535, not '65536'"),
        ("http://[::1]:0", "the port must be a number from 1 to 65535, not '0'"),
        ("http://[::1]:", "the port must be a number from 1 to 65535, not ''"),
        ("http://[::1]x", "unexpected 'x' after the host"),
        ("http://a:²", "it has spaces, control or non-ASCII characters"),
        ("http://a/?q=1#f", "a query (?...) is not allowed"),
        ("http://a/#f", "a fragment (#...) is not allowed"),
        ("http://user:pw@a/", "user info (user@) is not allowed"),
        ("http://a b/", "it has spaces, control or non-ASCII characters"),
    ],
)
def test_a_bad_public_url_is_refused_with_the_reason(
    url: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, "identity", "--in-memory", "--public-url", url)
    assert "--public-url: expected an absolute http:// or https:// URL" in err
    assert f"got {url!r}: {problem}" in err


def test_an_empty_public_url_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKENGATE_PUBLIC_URL", "")
    assert (
        "TOKENGATE_PUBLIC_URL (for --public-url): expected an absolute http:// or https:// URL "
        "such as https://id.example.com, got an empty string" in usage_error(capsys, "identity")
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://id.example.test/prefix",
        "https://id.example.test/prefix/",
        "http://127.0.0.1:9000",
        "http://a.test:1",
        "http://a.test:65535",
        "http://[::1]:9000/",
        "http://[::1]",
        "http://[::1]:65535/prefix",
        "https://id.example.test/a://b",  # only the first :// ends the scheme
        "HTTPS://ID.EXAMPLE.TEST",
        "http://localhost",
    ],
)
def test_a_good_public_url_is_kept(url: str) -> None:
    args = build_parser().parse_args(["identity", "--in-memory", "--public-url", url])
    assert args.public_url == url


# -- 6. Ctrl-C before the command runs ---------------------------------------------------------


@contextlib.contextmanager
def opened_by(process: subprocess.Popen[str], fifo: Path) -> Iterator[None]:
    """Until `process` opens `fifo` to read (then blocks reading it while the block runs)."""
    end = time.monotonic() + 30
    while (fd := _writer(fifo)) is None:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < end, "the file was never opened"
        time.sleep(0.02)
    try:
        yield
    finally:
        os.close(fd)


def _writer(fifo: Path) -> int | None:
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise


@pytest.mark.parametrize(
    "command",
    [
        ["config", "validate", "{fifo}"],
        ["gateway", "--config", "{fifo}", "--listen", "127.0.0.1:0", "--status-listen", ":0"],
        ["identity", "--in-memory", "--seed", "{fifo}", "--listen", "127.0.0.1:0"],
        ["run", "--config", "{fifo}"],
    ],
)
def test_ctrl_c_while_a_command_reads_its_files_is_exit_130_without_a_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    fifo = tmp_path / "slow.yaml"
    os.mkfifo(fifo)  # reading it blocks: a config that takes long to read
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate", *(arg.format(fifo=fifo) for arg in command)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with opened_by(process, fifo):
            process.send_signal(signal.SIGINT)
        # The file ends only now. Python runs a signal's handler between bytecodes: a Ctrl-C
        # that lands after the open but just before the read starts is acted on when the read
        # returns (it does not cut the read short), and a file that never ends never returns.
        err = process.communicate(timeout=15)[1]
    finally:
        process.kill()
        process.communicate()
    assert process.returncode == 130, err
    assert err.strip() == "tokengate: interrupted"


@pytest.mark.parametrize(
    ("env", "argv", "expected"),
    [
        ({"TOKENGATE_CONFIG": "k.yaml"}, ["gateway"], {"config": "k.yaml"}),  # no longer required
        (
            {"TOKENGATE_LISTEN": "127.0.0.1:1", "TOKENGATE_ACCESS_LOG": "off"},
            ["gateway", "--config", "k.yaml", "--listen", "127.0.0.1:2"],  # the flag wins
            {"listen": ("127.0.0.1", 2), "access_log": False},
        ),
        (
            {"TOKENGATE_ACCESS_LOG": "no"},
            ["gateway", "--config", "k.yaml", "--access-log"],
            {"access_log": True},
        ),
        ({}, ["gateway", "--config", "k.yaml", "--no-access-log"], {"access_log": False}),
        ({"TOKENGATE_ADMIN_TOKEN": "t", "TOKENGATE_DATA": "id.db"}, ["run"], {"data": "id.db"}),
        ({"TOKENGATE_LOG_LEVEL": "ERROR"}, ["identity"], {"log_level": "ERROR"}),
        # A bad value is no error where the flag overrides it: the variable is not used.
        (
            {"TOKENGATE_WORKERS": "two", "TOKENGATE_LISTEN": "nowhere"},
            ["gateway", "--config", "k.yaml", "--workers", "2", "--listen", ":8001"],
            {"workers": 2, "listen": ("0.0.0.0", 8001)},
        ),
        ({"TOKENGATE_CONFIG": ""}, ["run", "--config", "k.yaml"], {"config": "k.yaml"}),
        (
            {"TOKENGATE_ACCESS_LOG": "maybe"},
            ["gateway", "--config", "k.yaml", "--no-access-log"],
            {"access_log": False},
        ),
        ({"TOKENGATE_IN_MEMORY": "maybe"}, ["identity", "--in-memory"], {"in_memory": True}),
        (
            {"TOKENGATE_ADMIN_TOKEN": "s3cret\n", "TOKENGATE_DATA": ""},
            ["identity", "--admin-token", "s3cret", "rotate-keys", "--data", "id.db", UUID],
            {"admin_token": "s3cret", "data": "id.db"},
        ),
    ],
)
def test_variables_give_defaults_and_flags_override_them(
    env: dict[str, str],
    argv: list[str],
    expected: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = vars(build_parser().parse_args(argv))
    assert {name: args[name] for name in expected} == expected


# -- 7. rotate-keys on a database that is not there --------------------------------------------


def test_rotate_keys_on_a_missing_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "missing.db"
    result = tokengate("identity", "--data", str(data), "rotate-keys", UUID)
    assert result.returncode == 2
    assert result.stderr == (
        f"tokengate identity: --data {data}: the database does not exist (rotate-keys works on "
        "the database of an identity server that has run)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_rotate_keys_in_memory_is_refused_and_leaves_the_default_database_alone(
    tmp_path: Path,
) -> None:
    """--in-memory names no database: the one at the default path is not the user's to rotate."""
    default = tmp_path / "tokengate-identity.db"
    default.write_bytes(b"another server's")
    result = tokengate("identity", "--in-memory", "rotate-keys", UUID, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "tokengate: rotate-keys needs --data (an in-memory server keeps nothing)\n"
    )
    assert [path.name for path in tmp_path.iterdir()] == [default.name]
    assert default.read_bytes() == b"another server's"


def test_rotate_keys_on_a_directory_says_it_is_not_a_database_file(tmp_path: Path) -> None:
    result = tokengate("identity", "--data", str(tmp_path), "rotate-keys", UUID)
    assert result.returncode == 2
    assert f"--data {tmp_path}: the database is not a file" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", [["rotate-keys", UUID], ["--listen", "127.0.0.1:0"]], ids=["rotate-keys", "serve"]
)
def test_a_data_file_that_is_not_a_database_is_exit_1_naming_it(
    tmp_path: Path, command: list[str]
) -> None:
    data = tmp_path / "notes.txt"
    data.write_text("not a database\n" * 100)
    data.chmod(0o644)
    result = tokengate("identity", "--data", str(data), *command)
    assert result.returncode == 1
    # said once, not "cannot open X: cannot open identity database X: ..."
    assert (
        result.stderr
        == f"tokengate identity: cannot open identity database {data}: file is not a database\n"
    )
    assert result.stdout == ""
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    assert data.stat().st_mode & 0o777 == 0o644  # the user's file, left as it was


@pytest.mark.parametrize("command", ["identity", "run"])
def test_a_data_path_under_a_file_says_not_a_directory(tmp_path: Path, command: str) -> None:
    """`--data notes.txt/id.db`: the directory it names is a file. mkdir's own "File exists"
    said the opposite of what is wrong."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a directory\n")
    listen = [f"127.0.0.1:{free_port()}" for _ in range(4)]
    listeners = {
        "identity": ["--listen", listen[0]],
        "run": [
            *("--listen", listen[0], "--status-listen", listen[1]),
            *("--identity-listen", listen[2], "--echo-listen", listen[3]),
        ],
    }[command]
    result = tokengate(command, "--data", str(notes / "id.db"), *listeners)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"tokengate {command}: cannot open {notes / 'id.db'}: [Errno 20] Not a directory: '{notes}'"
    )


# -- 8. empty paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["identity", "--in-memory", "--seed", ""], "--seed"),
        (["identity", "--data", ""], "--data"),
        (["gateway", "--config", ""], "--config"),
        (["run", "--config", ""], "--config"),
        (["run", "--seed", ""], "--seed"),
        (["run", "--data", ""], "--data"),
        (["config", "validate", ""], "file"),
        (["identity", "rotate-keys", "--data", "", UUID], "--data"),
    ],
)
def test_an_empty_path_on_the_command_line_names_the_option(
    argv: list[str], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert f"argument {name}: empty path" in usage_error(capsys, *argv)


@pytest.mark.parametrize(
    ("command", "variable", "flag"),
    [
        (["gateway"], "TOKENGATE_CONFIG", "--config"),
        (["identity"], "TOKENGATE_SEED", "--seed"),
        (["identity"], "TOKENGATE_DATA", "--data"),
        (["run"], "TOKENGATE_CONFIG", "--config"),
    ],
)
def test_an_empty_path_in_the_environment_names_the_variable(
    command: list[str], variable: str, flag: str
) -> None:
    result = tokengate(*command, env={variable: ""}, timeout=30)
    assert result.returncode == 2
    assert f"{variable} (for {flag}): empty path" in result.stderr
    assert "Traceback" not in result.stderr


def _no_file_bigger_than_a_byte() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, 1))


@pytest.mark.parametrize(
    ("disk", "error"), [("read-only", "No such file or directory"), ("full", "File too large")]
)
def test_workers_without_a_writable_temporary_directory_say_so_and_exit_1(
    kong_yaml: Path, tmp_path: Path, disk: str, error: str
) -> None:
    """Several workers share metrics and a config snapshot through files: on a read-only root
    filesystem (where no temporary directory is usable), or a full one (where directories are
    made but no file written), that is one clear message, not a traceback. The process below
    sees only an unusable temporary directory, or a limit on file sizes, as it would there."""
    temporary = tmp_path / disk
    if disk == "full":
        temporary.mkdir()
    script = (
        "import sys, tempfile; tempfile.tempdir = sys.argv.pop(1); "
        "from tokengate.cli import main; sys.exit(main())"
    )
    argv = ["gateway", "--config", str(kong_yaml), "--workers", "2"]
    argv += ["--listen", f"127.0.0.1:{free_port()}", "--status-listen", f"127.0.0.1:{free_port()}"]
    result = subprocess.run(
        [sys.executable, "-c", script, str(temporary), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=_no_file_bigger_than_a_byte if disk == "full" else None,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (message,) = [line for line in result.stderr.splitlines() if " WARNING " not in line]
    assert message == (
        "tokengate: --workers 2 needs a writable temporary directory (TMPDIR, else /tmp) for "
        f"the workers' shared metrics and config snapshot: {error}; mount one (in Kubernetes, "
        "an emptyDir at /tmp) or run --workers 1"
    ), result.stderr
    if disk == "full":  # and the directories made before the write failed are gone
        assert not list(temporary.iterdir())


# -- 9. a variable is the business of the commands that take its option ----------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TOKENGATE_WORKERS", "0"),  # gateway's
        ("TOKENGATE_PUBLIC_URL", "id.example.com"),  # identity's
        ("TOKENGATE_ECHO_LISTEN", "nowhere"),  # run's
    ],
)
def test_a_bad_variable_of_another_command_stops_neither_version_nor_validate(
    variable: str,
    value: str,
    kong_yaml: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One environment may serve several commands (a container's, a CI job's): a value only
    `gateway`, `identity` or `run` reads is that command's error, not every command's."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert main(["config", "validate", str(kong_yaml)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"tokengate {__version__}\n") and variable not in err
    assert f"{kong_yaml}: ok (1 service, 1 route)" in out


# -- 10. an admin token a client can send -----------------------------------------------------


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("", "empty admin token: give one, or leave the option out to have one generated"),
        ("s3cret\n", "the admin token has spaces or a newline around it"),
        (" s3cret", "the admin token has spaces or a newline around it"),
        (
            "s3\x01cret",
            "the admin token has spaces or a newline around it, or control characters: no "
            "Authorization header would match it",
        ),
        (
            "s3cret\u00e9",  # sent in each client's own encoding
            "the admin token has non-ASCII characters, which HTTP clients encode differently "
            "(UTF-8, Latin-1): not every client could send it",
        ),
    ],
)
@pytest.mark.parametrize("command", [["identity", "--in-memory"], ["run"]])
def test_an_admin_token_no_client_could_send_is_refused(
    token: str, problem: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The server strips the spaces around the token a client sends: one set with a newline
    after it (a secret file's last line) would lock every client out of /v1."""
    err = usage_error(capsys, *command, "--admin-token", token)
    assert f"argument --admin-token: {problem}" in err
    assert "s3cret" not in err  # a secret: not echoed


def test_an_admin_token_from_a_secret_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKENGATE_ADMIN_TOKEN", "s3cret\n")
    err = usage_error(capsys, "identity", "--in-memory")
    assert "TOKENGATE_ADMIN_TOKEN (for --admin-token): the admin token has spaces" in err
    monkeypatch.setenv("TOKENGATE_ADMIN_TOKEN", "my s3cret")  # Bearer my s3cret: it matches
    assert build_parser().parse_args(["run"]).admin_token == "my s3cret"


# -- help and a missing subcommand speak of the tool, not of its code --------------------------


def test_a_missing_config_subcommand_names_the_one_there_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = usage_error(capsys, "config")
    assert "the following arguments are required: {validate}" in err
    err = usage_error(capsys)
    assert "tokengate: error: the following arguments are required: command" in err
    err = usage_error(capsys, "gateway")
    assert "tokengate gateway: error: the following arguments are required: --config" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["identity", "--data", "id.db", "rotate-keys", UUID],
        ["identity", "rotate-keys", "--data", "id.db", UUID],
    ],
)
def test_rotate_keys_takes_data_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.identity_command, args.data, args.auth_server_id) == ("rotate-keys", "id.db", UUID)


def test_help_describes_the_tool_and_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # as wrapped to no terminal's width
    assert out.startswith("usage: tokengate [-h] [--version] {gateway,identity,run,config} ...")
    assert (
        "A gateway that runs Kong's openid-connect plugin for bearer tokens from a kong.yaml, "
        "and a local Kong Identity to issue them." in out
    )
    assert "argument parsing" not in out  # the module's docstring is for its readers
    assert out.endswith(
        "Every option also reads TOKENGATE_<NAME> (e.g. TOKENGATE_LISTEN). Exit codes: 0 ok, "
        "1 runtime failure, 2 bad usage or bad config, 130 interrupted (Ctrl-C) while starting."
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["identity", "rotate-keys", "--help"])
    assert "auth_server_id  the auth server's id" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "lines"),
    [
        (
            [],
            [
                "gateway run the OIDC gateway (reverse proxy)",
                "identity run the local Kong Identity server",
                "run identity server + gateway + echo upstream",
                "config work with kong.yaml files",
            ],
        ),
        (["config"], ["validate check a kong.yaml as the gateway would"]),
        (["config", "validate"], ["file kong.yaml to check"]),
        (
            ["identity"],
            ["rotate-keys give an auth server a new signing key (the old one stays published)"],
        ),
        (
            ["identity", "rotate-keys"],
            ["--data DATA the identity server's SQLite file (as `identity --data`)"],
        ),
    ],
)
def test_help_says_what_each_subcommand_and_argument_is(
    argv: list[str], lines: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for line in lines:
        assert line in out
