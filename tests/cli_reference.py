"""The README's option tables, rendered from the real argument parser (tests/test_cli.py checks
that the README holds exactly this text).

    python -m tests.cli_reference    # print the tables, to paste between the README's markers
"""

from __future__ import annotations

import argparse

from tokengate.cli import build_parser

START = "<!-- cli-options:start (tests/test_cli.py keeps these tables in step with the parser) -->"
END = "<!-- cli-options:end -->"


def _default(action: argparse.Action) -> str:
    value = action.default
    if value == argparse.SUPPRESS:  # taken from the parent command's option of that name
        return ""
    if isinstance(value, tuple | frozenset) and not value:
        return "none"
    if isinstance(value, tuple):
        return f"`{value[0]}:{value[1]}`"
    if isinstance(value, bool):
        return "on" if value else "off"
    return "" if value is None else f"`{value}`"


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _all_commands(
    parser: argparse.ArgumentParser, prefix: str = "tokengate"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command and nested subcommand (`config validate`, `identity rotate-keys`), in order."""
    found = []
    for name, command in _commands(parser).items():
        found.append((f"{prefix} {name}", command))
        found += _all_commands(command, f"{prefix} {name}")
    return found


def render() -> str:
    lines = [START]
    for name, command in _all_commands(build_parser()):
        options = [
            a
            for a in command._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)
        ]
        if not options:
            continue
        lines += ["", f"`{name}`:", "", "| option | default | meaning |", "|---|---|---|"]
        for action in options:
            flags = " / ".join(f"`{flag}`" for flag in action.option_strings)
            meaning = (action.help or "").split(" (env ")[0]
            lines.append(f"| {flags} | {_default(action)} | {meaning} |")
    lines += ["", END]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())
