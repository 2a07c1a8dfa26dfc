"""Command line: argument parsing for every subcommand, and nothing else.

    tokengate gateway --config kong.yaml --listen 127.0.0.1:8000
    tokengate config validate kong.yaml

Every option also reads TOKENGATE_<NAME> (e.g. TOKENGATE_LISTEN). Exit codes: 0 ok,
1 runtime failure, 2 bad usage or bad config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from tokengate.gateway.config import ConfigError, GatewayConfig, load_config
from tokengate.gateway.settings import GatewaySettings
from tokengate.gateway.workers import run_workers

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
_DEFAULTS = GatewaySettings()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_address(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces on 127.0.0.1 is not assumed)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (port 0-65535)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return int(value)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return number


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
    env_name = "TOKENGATE_" + flag.lstrip("-").replace("-", "_").upper()
    env_value = os.environ.get(env_name)
    if env_value is not None:
        try:
            default = type(env_value)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"{env_name}: {exc}")
        required = False
    parser.add_argument(
        flag, default=default, type=type, required=required, help=f"{help} (env {env_name})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tokengate", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gateway = commands.add_parser("gateway", help="run the OIDC gateway (reverse proxy)")
    _option(gateway, "--config", help="kong.yaml (decK declarative format)", required=True)
    _option(
        gateway, "--listen", default=("127.0.0.1", 8000), type=parse_address, help="proxy address"
    )
    _option(
        gateway,
        "--status-listen",
        default=("127.0.0.1", 8100),
        type=parse_address,
        help="status API address (/healthz, /readyz)",
    )
    _option(
        gateway,
        "--workers",
        default=1,
        type=_positive_int,
        help="worker processes sharing the proxy port",
    )
    _option(
        gateway,
        "--max-body-size",
        default=_DEFAULTS.max_body_size,
        type=_positive_int,
        help="largest request body in bytes (413 beyond)",
    )
    _option(
        gateway,
        "--client-body-timeout",
        default=_DEFAULTS.client_body_timeout,
        type=_positive_float,
        help="seconds a client may stall while sending a body",
    )
    _option(
        gateway,
        "--client-header-timeout",
        default=_DEFAULTS.client_header_timeout,
        type=_positive_float,
        help="seconds for a request head to arrive (also the idle keep-alive limit)",
    )
    _option(
        gateway,
        "--keepalive-timeout",
        default=_DEFAULTS.keepalive_timeout,
        type=_positive_float,
        help="seconds an idle client keep-alive connection stays open",
    )
    _option(
        gateway,
        "--client-send-timeout",
        default=_DEFAULTS.client_send_timeout,
        type=_positive_float,
        help="seconds a client may stop reading a streamed response before it is cut off",
    )
    _option(gateway, "--log-level", default="info", help="debug, info, warning or error")

    config = commands.add_parser("config", help="work with kong.yaml files")
    config_commands = config.add_subparsers(
        dest="config_command", required=True, parser_class=_Parser
    )
    validate = config_commands.add_parser("validate", help="check a kong.yaml as the gateway would")
    validate.add_argument("file", help="kong.yaml to check")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "config":
        return validate_command(args.file)
    if args.command == "gateway":
        return gateway_command(args)
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


def _load(path: str) -> GatewayConfig | None:
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None
    for line in config.warnings:
        print(f"warning: {line}", file=sys.stderr)
    return config


def validate_command(path: str) -> int:
    config = _load(path)
    if config is None:
        return EXIT_USAGE
    print(f"{path}: ok ({len(config.services)} services, {len(config.routes)} routes)")
    return EXIT_OK


def gateway_command(args: argparse.Namespace) -> int:
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        print(f"tokengate: --log-level: unknown level {args.log_level!r}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _load(args.config)
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
    )
    return run_workers(args.config, config, settings, workers=args.workers)
