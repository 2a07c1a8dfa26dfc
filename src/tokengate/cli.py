"""Command line: argument parsing for every subcommand, and nothing else.

    tokengate gateway --config kong.yaml --listen 127.0.0.1:8000
    tokengate run                      # identity + gateway + echo upstream, from config/
    tokengate config validate kong.yaml

Every option also reads TOKENGATE_<NAME> (e.g. TOKENGATE_LISTEN). Exit codes: 0 ok,
1 runtime failure, 2 bad usage or bad config, 130 interrupted (Ctrl-C) while starting.
"""

from __future__ import annotations

import signal
import sys

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C
IDENTITY_DB = "tokengate-identity.db"  # the identity server's database, without --data
# Not read from __doc__, which python -OO drops.
_EPILOG = (
    "Every option also reads TOKENGATE_<NAME> (e.g. TOKENGATE_LISTEN). Exit codes: 0 ok, "
    "1 runtime failure, 2 bad usage or bad config, 130 interrupted (Ctrl-C) while starting."
)


def _interrupted_while_loading(signum: int, frame: object) -> None:
    print("tokengate: interrupted", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED)


# A Ctrl-C is no traceback, from here on: while the imports below load (the `tokengate` script
# imports this module, then calls main) this handler ends the command; in main(), an `except
# KeyboardInterrupt`. This module's last lines give Python's handler back.
_GUARDED = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not SIG_IGN
if _GUARDED:
    try:
        signal.signal(signal.SIGINT, _interrupted_while_loading)
    except ValueError:  # imported outside the main thread
        _GUARDED = False

# Only the standard library at import time: the rest (aiohttp, cryptography: half a second) is
# imported inside main().
import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from ipaddress import (  # noqa: E402
    IPv4Network,
    IPv6Network,
    ip_network,
)
from typing import TYPE_CHECKING, Any, NoReturn  # noqa: E402

from tokengate import __version__  # noqa: E402
from tokengate.addresses import (  # noqa: E402
    ascii_digits,
    is_host_name,
    is_ip,
    overlap,
    show,
    url_problem,
)
from tokengate.listening import env_name as _env_name  # noqa: E402

if TYPE_CHECKING:
    from tokengate.gateway.config import GatewayConfig


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The flags are public interface: `--worker 2` is a typo to report, not `--workers`.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # Bad TOKENGATE_* values of this command's options (each with its option's dest),
        # reported when this command runs without that option on its command line.
        self.env_errors: list[tuple[str, str]] = []

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        # Every command's options read their variables when the parser is built; a bad value
        # is an error of the command that takes it only: `tokengate --version`, or `config
        # validate`, has no use for TOKENGATE_WORKERS. Nor has `--workers 2`: the flag wins.
        parser: _Parser | None = self
        while parser is not None:
            for dest, message in parser.env_errors:
                if getattr(parsed, dest, None) is None:  # the default a bad variable leaves
                    parser.error(message)
            parser = parser._chosen(parsed)
        return parsed, extras

    def _chosen(self, namespace: argparse.Namespace) -> _Parser | None:
        """The subcommand's parser that parsed `namespace`, if this parser has subcommands."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(str(getattr(namespace, action.dest, "")))
                return chosen if isinstance(chosen, _Parser) else None
        return None

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_address(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (every interface: 0.0.0.0)."""
    wanted = (
        "expected HOST:PORT with a port from 0 to 65535 (an IPv6 address in brackets, "
        f"e.g. [::1]:8000), got {value!r}"
    )
    host, sep, port_text = value.rpartition(":")
    if not sep or not ascii_digits(port_text) or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(wanted)
    port = int(port_text)
    if host.startswith("[") or host.endswith("]"):
        # "[]:80" is no address (not every interface); "[::1:80" has no closing bracket.
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else ""
        if not is_ip(inner, version=6):
            raise argparse.ArgumentTypeError(wanted)
        return inner, port
    if not host:
        return "0.0.0.0", port
    if not (is_ip(host, version=4) or is_host_name(host)):
        raise argparse.ArgumentTypeError(wanted)
    return host, port


def _positive_int(value: str) -> int:
    if not ascii_digits(value) or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return int(value)


# nginx's NGX_MAX_PROCESSES: it spawns no more. A larger count is a typo, and one past memory
# (--workers 99999999999999999999) would end in a MemoryError traceback, or forks until none fit.
MAX_WORKERS = 1024


def _worker_count(value: str) -> int:
    count = _positive_int(value)
    if count > MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_WORKERS} worker processes, got {value!r}"
        )
    return count


def _positive_float(value: str) -> float:
    try:
        number = float(value) if value.isascii() else -1.0
    except ValueError:
        number = -1.0
    if not 0 < number < math.inf:  # nan too; "inf" would be no bound at all
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
    return number


def _path(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("empty path: expected a file name")
    return value


def _admin_token(value: str) -> str:
    """What every /v1 request sends as `Authorization: Bearer <token>`. The server strips the
    spaces around the token it is sent: one written with spaces or a newline around it (a
    secret file's last line) would never match, and control characters cannot be sent. Non-ASCII
    ones go in each client's own encoding (curl: UTF-8, Python's http.client: Latin-1)."""
    if not value:
        raise argparse.ArgumentTypeError(
            "empty admin token: give one, or leave the option out to have one generated"
        )
    if value != value.strip() or not value.isprintable():
        # Not echoed: it is a secret.
        raise argparse.ArgumentTypeError(
            "the admin token has spaces or a newline around it, or control characters: no "
            "Authorization header would match it"
        )
    if not value.isascii():
        raise argparse.ArgumentTypeError(
            "the admin token has non-ASCII characters, which HTTP clients encode differently "
            "(UTF-8, Latin-1): not every client could send it"
        )
    return value


def _public_url(value: str) -> str:
    """An absolute http(s) URL with a host, maybe a path prefix: issuers are published as
    `{public-url}/{issuer-id}/auth`, which a query, a fragment or user info would break."""
    wanted = "expected an absolute http:// or https:// URL such as https://id.example.com"
    if not value:
        raise argparse.ArgumentTypeError(f"{wanted}, got an empty string")
    problem = url_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{wanted}, got {value!r}: {problem}")
    return value


def parse_trusted_ips(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma-separated addresses or CIDR blocks (Kong's trusted_ips); "" trusts no one."""
    networks = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            networks.append(ip_network(item, strict=False))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not an IP address or CIDR block (e.g. 10.0.0.0/8, ::1)"
            ) from None
    return tuple(networks)


def _plugin_names(value: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in value.split(",")) - {""}
    if not names:
        raise argparse.ArgumentTypeError("expected plugin names separated by commas")
    return names


def _ignore_plugins_option(parser: argparse.ArgumentParser) -> None:
    _option(
        parser,
        "--ignore-plugins",
        default=frozenset(),
        type=_plugin_names,
        help="comma-separated access-control plugins of kong.yaml (key-auth, acl, pre-function, "
        "...), or plugins Kong does not bundle (your custom ones), to run without: tokengate "
        "does not run them, so what they guard is open; without this a kong.yaml that has one "
        "is refused",
    )


def _log_level_name(value: str) -> str:
    if not isinstance(getattr(logging, value.upper(), None), int):
        raise argparse.ArgumentTypeError(f"{value!r} is not one of debug, info, warning, error")
    return value


def _log_format(value: str) -> str:
    from tokengate.logs import LOG_FORMATS

    if value not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(LOG_FORMATS)}")
    return value


def _switch(value: str) -> bool:
    word = value.strip().lower()
    if word not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise argparse.ArgumentTypeError(
            f"expected true or false (or 1/0, yes/no, on/off), got {value!r}"
        )
    return word in ("1", "true", "yes", "on")


def _option(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    default: Any = None,
    type: Callable[[str], Any] = str,
    help: str,
    required: bool = False,
) -> None:
    """An option whose default comes from TOKENGATE_<NAME> when that variable is set."""
    env_name = _env_name(flag)
    env_value = os.environ.get(env_name)
    if env_value is not None:
        default = _from_env(parser, flag, type, env_value)
        required = False
    parser.add_argument(
        flag, default=default, type=type, required=required, help=f"{help} (env {env_name})"
    )


def _switch_option(parser: argparse.ArgumentParser, flag: str, *, default: bool, help: str) -> None:
    """`--flag` / `--no-flag`, defaulting to TOKENGATE_<NAME> (true/false) when that is set."""
    env_name = _env_name(flag)
    env_value = os.environ.get(env_name)
    if env_value is not None:
        default = _from_env(parser, flag, _switch, env_value)
    parser.add_argument(
        flag,
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{help} (env {env_name})",
    )


def _flag_option(parser: argparse.ArgumentParser, flag: str, *, help: str) -> None:
    """`--flag` (off without it), or TOKENGATE_<NAME>=true/false: the same words as every
    switch, so that `false` is off and `maybe` an error."""
    env_name = _env_name(flag)
    env_value = os.environ.get(env_name)
    default = False if env_value is None else _from_env(parser, flag, _switch, env_value)
    parser.add_argument(flag, action="store_true", default=default, help=f"{help} (env {env_name})")


def _from_env(
    parser: argparse.ArgumentParser, flag: str, type: Callable[[str], Any], value: str
) -> Any:
    try:
        return type(value)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        assert isinstance(parser, _Parser)  # every parser here is one
        dest = flag.lstrip("-").replace("-", "_")
        parser.env_errors.append((dest, f"{_env_name(flag)} (for {flag}): {exc}"))
        return None  # never what a flag given on the command line parses to


def _logging_options(parser: argparse.ArgumentParser, *, level: str = "info") -> None:
    _option(
        parser,
        "--log-level",
        default=level,
        type=_log_level_name,
        help="debug, info, warning or error",
    )
    _option(
        parser,
        "--log-format",
        default="text",
        type=_log_format,
        help="text, or json: one JSON object per line",
    )


def build_parser() -> argparse.ArgumentParser:
    from tokengate.gateway.settings import GatewaySettings

    defaults = GatewaySettings()
    parser = _Parser(
        prog="tokengate",
        description="A gateway that runs Kong's openid-connect plugin for bearer tokens from a "
        "kong.yaml, and a local Kong Identity to issue them.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"tokengate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gateway = commands.add_parser("gateway", help="run the OIDC gateway (reverse proxy)")
    _option(
        gateway,
        "--config",
        type=_path,
        help="kong.yaml (decK declarative format)",
        required=True,
    )
    _option(
        gateway, "--listen", default=("127.0.0.1", 8000), type=parse_address, help="proxy address"
    )
    _option(
        gateway,
        "--status-listen",
        default=("127.0.0.1", 8100),
        type=parse_address,
        help="status API address (/healthz, /readyz, /metrics)",
    )
    _option(
        gateway,
        "--workers",
        default=1,
        type=_worker_count,
        help=f"worker processes sharing the proxy port, at most {MAX_WORKERS} (more than 1: a "
        "supervisor restarts any that dies)",
    )
    _option(
        gateway,
        "--max-body-size",
        default=defaults.max_body_size,
        type=_positive_int,
        help="largest request body in bytes (413 beyond)",
    )
    _option(
        gateway,
        "--client-body-timeout",
        default=defaults.client_body_timeout,
        type=_positive_float,
        help="seconds a client may stall between two pieces of a body (nginx's "
        "client_body_timeout, not a bound on the whole body; the body must also average "
        "500 bytes/s after these seconds)",
    )
    _option(
        gateway,
        "--client-header-timeout",
        default=defaults.client_header_timeout,
        type=_positive_float,
        help="seconds for a started request head to arrive in full (slowloris protection)",
    )
    _option(
        gateway,
        "--max-connections",
        default=defaults.max_connections,
        type=_positive_int,
        help="client connections a worker takes; past it an idle one is closed, else the new one "
        "(default: from the open-file limit, at most 16384)",
    )
    _option(
        gateway,
        "--keepalive-timeout",
        default=defaults.keepalive_timeout,
        type=_positive_float,
        help="seconds an idle client keep-alive connection stays open",
    )
    _option(
        gateway,
        "--client-send-timeout",
        default=defaults.client_send_timeout,
        type=_positive_float,
        help="seconds a client may stop reading a response before it is cut off",
    )
    _option(
        gateway,
        "--shutdown-timeout",
        default=defaults.shutdown_timeout,
        type=_positive_float,
        help="seconds requests in progress get to finish on SIGTERM/SIGINT before they are cut off",
    )
    _option(
        gateway,
        "--trusted-ips",
        default=(),
        type=parse_trusted_ips,
        help="comma-separated addresses or CIDR blocks of proxies whose X-Forwarded-* headers "
        "are believed, e.g. a TLS terminator (Kong's trusted_ips; default: none)",
    )
    _ignore_plugins_option(gateway)
    _logging_options(gateway)
    _switch_option(
        gateway,
        "--access-log",
        default=True,
        help="one line per request (logger tokengate.access, at info level)",
    )

    identity = commands.add_parser("identity", help="run the local Kong Identity server")
    _option(
        identity,
        "--listen",
        default=("127.0.0.1", 9000),
        type=parse_address,
        help="address of the management API and the issuers",
    )
    _option(
        identity,
        "--public-url",
        default=None,
        type=_public_url,
        help="URL clients use to reach this server (default: http:// and the listen address)",
    )
    # None until given: --in-memory beside a --data would leave one of them unheeded.
    _option(
        identity, "--data", default=None, type=_path, help=f"SQLite file (default: {IDENTITY_DB})"
    )
    _flag_option(identity, "--in-memory", help="keep nothing on disk")
    _option(
        identity,
        "--admin-token",
        default=None,
        type=_admin_token,
        help="bearer token for /v1 (default: generated and printed)",
    )
    _option(
        identity,
        "--seed",
        default=None,
        type=_path,
        help="YAML of auth servers, scopes, claims, clients",
    )
    _logging_options(identity)
    identity_commands = identity.add_subparsers(dest="identity_command", parser_class=_Parser)
    rotate = identity_commands.add_parser(
        "rotate-keys", help="give an auth server a new signing key (the old one stays published)"
    )
    rotate.add_argument("auth_server_id", help="the auth server's id, as /v1/auth-servers has it")
    # Also after the subcommand, where a reader of `rotate-keys --help` would put it.
    rotate.add_argument(
        "--data",
        default=argparse.SUPPRESS,
        type=_path,
        help="the identity server's SQLite file (as `identity --data`)",
    )

    _add_run(commands.add_parser("run", help="identity server + gateway + echo upstream"))

    config = commands.add_parser("config", help="work with kong.yaml files")
    config_commands = config.add_subparsers(
        dest="config_command", metavar="{validate}", required=True, parser_class=_Parser
    )
    validate = config_commands.add_parser("validate", help="check a kong.yaml as the gateway would")
    validate.add_argument("file", type=_path, help="kong.yaml to check")
    _ignore_plugins_option(validate)
    return parser


def _add_run(run: argparse.ArgumentParser) -> None:
    # Same option names as `gateway` and `identity`, hence the same TOKENGATE_* variables: each
    # subcommand reads only its own, and --listen here is the gateway's, as in `gateway`.
    _option(
        run, "--config", default="config/kong.yaml", type=_path, help="kong.yaml for the gateway"
    )
    _option(
        run,
        "--seed",
        default="config/identity-seed.yaml",
        type=_path,
        help="identity seed: auth servers, scopes, claims, clients",
    )
    _option(run, "--listen", default=("127.0.0.1", 8000), type=parse_address, help="gateway proxy")
    _option(
        run,
        "--status-listen",
        default=("127.0.0.1", 8100),
        type=parse_address,
        help="gateway status API",
    )
    _option(
        run,
        "--identity-listen",
        default=("127.0.0.1", 9000),
        type=parse_address,
        help="identity server (management API and issuers)",
    )
    _option(
        run, "--echo-listen", default=("127.0.0.1", 9100), type=parse_address, help="echo upstream"
    )
    _option(
        run, "--data", default=None, type=_path, help="identity SQLite file (default: in memory)"
    )
    _option(
        run,
        "--admin-token",
        default=None,
        type=_admin_token,
        help="identity admin token (default: generated)",
    )
    _ignore_plugins_option(run)
    _logging_options(run, level="warning")  # quiet by default: the panel is the output


def main(argv: Sequence[str] | None = None) -> int:
    # A Ctrl-C before a server has its own handlers in place (while modules load, a config is
    # parsed, a database opens) ends the command as the shell expects, without a traceback.
    # Once running, gateway, identity and run handle SIGINT themselves (drain, then exit 0).
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("tokengate: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "config":
        return validate_command(args.file, args.ignore_plugins)
    if args.command == "gateway":
        return gateway_command(args)
    if args.command == "identity":
        return identity_command(args)
    if args.command == "run":
        return run_command(args)
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


def _configure_logging(args: argparse.Namespace) -> None:
    from tokengate.logs import configure_logging

    # The level's name was checked when the arguments were parsed.
    configure_logging(getattr(logging, args.log_level.upper()), args.log_format)


def identity_command(args: argparse.Namespace) -> int:
    from tokengate.identity.server import IdentitySettings, rotate_keys, serve_identity

    _configure_logging(args)
    if args.in_memory and args.data is not None:
        print(
            f"tokengate identity: error: --in-memory keeps nothing on disk, and --data "
            f"{args.data} names a file to keep it in: give one of them (TOKENGATE_IN_MEMORY and "
            "TOKENGATE_DATA count as given)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.identity_command == "rotate-keys":
        if args.in_memory:
            print(
                "tokengate: rotate-keys needs --data (an in-memory server keeps nothing)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return rotate_keys(args.data or IDENTITY_DB, args.auth_server_id)
    settings = IdentitySettings(
        listen=args.listen,
        public_url=args.public_url,
        data=None if args.in_memory else args.data or IDENTITY_DB,
        admin_token=args.admin_token,
        seed=args.seed,
    )
    return serve_identity(settings)


def _shared_port(listeners: list[tuple[str, tuple[str, int]]], command: str) -> int:
    """EXIT_USAGE (and why) if two listeners would take the same port: with SO_REUSEPORT
    (several workers) both would bind, and connections would land on either at random."""
    for index, (flag, address) in enumerate(listeners):
        for other_flag, other in listeners[:index]:
            if overlap(address, other):
                print(
                    f"tokengate {command}: error: {flag} {show(address)} takes the port of "
                    f"{other_flag} {show(other)}: each needs an address:port of its own",
                    file=sys.stderr,
                )
                return EXIT_USAGE
    return EXIT_OK


def _print_warning(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _load(
    path: str,
    ignored_plugins: frozenset[str],
    warn: Callable[[str], None] = _print_warning,
) -> GatewayConfig | None:
    from tokengate.gateway.config import ConfigError, load_config

    try:
        config = load_config(path, ignored_plugins=ignored_plugins)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None
    for line in config.warnings:
        warn(line)
    return config


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def validate_command(path: str, ignored_plugins: frozenset[str]) -> int:
    config = _load(path, ignored_plugins)
    if config is None:
        return EXIT_USAGE
    services, routes = len(config.services), len(config.routes)
    print(f"{path}: ok ({_count(services, 'service')}, {_count(routes, 'route')})")
    return EXIT_OK


def _own_metrics_directory() -> str | None:
    """Drop a PROMETHEUS_MULTIPROC_DIR from the environment; the value, to warn about.

    prometheus-client reads it on first import and then sums every file in that directory,
    those of earlier runs included. The gateway gives its workers a fresh one of its own (and
    one worker keeps its metrics in memory): call this before anything imports the client."""
    return os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def _warn_ignored_metrics_directory(path: str | None) -> None:
    if path is not None:
        logging.getLogger("tokengate.metrics").warning(
            "PROMETHEUS_MULTIPROC_DIR=%s is ignored: tokengate shares its workers' metrics "
            "through a fresh directory of its own (files left there by earlier runs would be "
            "counted again)",
            path,
        )


def gateway_command(args: argparse.Namespace) -> int:
    ignored = _own_metrics_directory()
    from tokengate.gateway.settings import GatewaySettings
    from tokengate.gateway.workers import run_workers

    clash = _shared_port(
        [("--listen", args.listen), ("--status-listen", args.status_listen)], "gateway"
    )
    if clash:
        return clash
    for flag, address in (("--listen", args.listen), ("--status-listen", args.status_listen)):
        if args.workers > 1 and address[1] == 0:
            # Each worker binds for itself: port 0 would give each its own port, not one shared.
            print(
                f"tokengate gateway: error: {flag} {show(address)} with --workers "
                f"{args.workers}: every worker would take a port of its own; give a port, or "
                "run --workers 1",
                file=sys.stderr,
            )
            return EXIT_USAGE
    _configure_logging(args)
    _warn_ignored_metrics_directory(ignored)
    # A running gateway's warnings are log records, so that --log-format json stays JSON.
    config = _load(args.config, args.ignore_plugins, logging.getLogger("tokengate.config").warning)
    if config is None:
        return EXIT_USAGE
    settings = GatewaySettings(
        listen=args.listen,
        status_listen=args.status_listen,
        max_body_size=args.max_body_size,
        client_body_timeout=args.client_body_timeout,
        client_header_timeout=args.client_header_timeout,
        keepalive_timeout=args.keepalive_timeout,
        client_send_timeout=args.client_send_timeout,
        max_connections=args.max_connections,
        shutdown_timeout=args.shutdown_timeout,
        trusted_ips=args.trusted_ips,
        access_log=args.access_log,
        log_format=args.log_format,
        ignored_plugins=args.ignore_plugins,
    )
    return run_workers(args.config, config, settings, workers=args.workers)


def run_command(args: argparse.Namespace) -> int:
    ignored = _own_metrics_directory()
    from tokengate.gateway.settings import GatewaySettings
    from tokengate.identity.seed import SeedError, load_seed
    from tokengate.stack import StackSettings, run_stack

    clash = _shared_port(
        [
            ("--listen", args.listen),
            ("--status-listen", args.status_listen),
            ("--identity-listen", args.identity_listen),
            ("--echo-listen", args.echo_listen),
        ],
        "run",
    )
    if clash:
        return clash
    _configure_logging(args)
    _warn_ignored_metrics_directory(ignored)
    # As the gateway's: log records, so that --log-format json stays JSON.
    config = _load(args.config, args.ignore_plugins, logging.getLogger("tokengate.config").warning)
    try:
        seed = load_seed(args.seed)
    except SeedError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        seed = None
    if config is None or seed is None:
        if not (os.path.isfile(args.config) and os.path.isfile(args.seed)):
            print(
                "tokengate run: --config and --seed are relative to the current directory "
                "(config/ is in the repository root)",
                file=sys.stderr,
            )
        return EXIT_USAGE
    settings = StackSettings(
        listen=args.listen,
        status_listen=args.status_listen,
        identity_listen=args.identity_listen,
        echo_listen=args.echo_listen,
        data=args.data,
        admin_token=args.admin_token,
        gateway=GatewaySettings(ignored_plugins=args.ignore_plugins),
        config_path=args.config,
    )
    return run_stack(settings, config, seed)


if _GUARDED:
    signal.signal(signal.SIGINT, signal.default_int_handler)
