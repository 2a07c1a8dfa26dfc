"""wrk Lua scripts the auth rows need, written into a run's work directory.

    script = write_token_cycle(workdir / "cycle.lua", issuer.tokens_file)  # new token per request
    script = write_random_kid(workdir / "storm.lua", issuer.token)  # unknown-kid storm
    script = write_form_post(workdir / "token.lua", "grant_type=...")  # POST a form body
    script = write_paced_token(workdir / "paced.lua", issuer.token, delay_ms=13.3)  # control

Both scripts print `status <code> <count>` lines from `done()` (counted per response), which
`parse_status_counts` reads back: wrk itself only reports "Non-2xx or 3xx responses". The storm
script also prints one `sample-token <token>` built by the same code as its requests, so the
harness can check that the storm tokens really are well-formed tokens with a foreign kid (a
malformed storm would never reach the key lookup and would prove nothing).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

# Counting statuses: every thread counts into its own globals; `done()` (main Lua state) reads
# them through the thread handles collected in `setup()`.
_STATUS_COUNTING = """\
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local function print_statuses()
  local total = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses") or {}
    for code, n in pairs(counts) do
      total[code] = (total[code] or 0) + n
    end
  end
  for code, n in pairs(total) do
    io.write(string.format("status %d %d\\n", code, n))
  end
end
"""

_TOKEN_CYCLE = (
    """\
-- A different pre-minted token on every request: the requests are formatted once in init().
local tokens_file = @TOKENS_FILE@
local requests = {}
local next_index = 0

function init(args)
  statuses = {}
  for line in io.lines(tokens_file) do
    if #line > 0 then
      local headers = {}
      for name, value in pairs(wrk.headers) do headers[name] = value end
      headers["Authorization"] = "Bearer " .. line
      requests[#requests + 1] = wrk.format(nil, nil, headers)
    end
  end
  if #requests == 0 then error("no tokens in " .. tokens_file) end
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
"""
    + _STATUS_COUNTING
    + """
function done(summary, latency, requests)
  print_statuses()
end
"""
)

_RANDOM_KID = (
    """\
-- A valid token's header re-encoded with a random kid on every request; payload and signature
-- are the real token's (the signature is never reached: the kid is unknown).
local header_before_kid = @BEFORE@
local header_after_kid = @AFTER@
local rest = @REST@
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = (b == nil) and 2 or ((c == nil) and 3 or 4)
    for j = 1, chars do
      local index = math.floor(v / 2 ^ (6 * (4 - j))) % 64
      out[#out + 1] = alphabet:sub(index + 1, index + 1)
    end
  end
  return table.concat(out)
end

local function random_kid()
  local hex = {}
  for i = 1, 32 do hex[i] = string.format("%x", math.random(0, 15)) end
  return "storm-" .. table.concat(hex)
end

function make_token()
  return b64url(header_before_kid .. random_kid() .. header_after_kid) .. rest
end

local base_headers = {}

function init(args)
  statuses = {}
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  for name, value in pairs(wrk.headers) do base_headers[name] = value end
end

function request()
  local headers = {}
  for name, value in pairs(base_headers) do headers[name] = value end
  headers["Authorization"] = "Bearer " .. make_token()
  return wrk.format(nil, nil, headers)
end
"""
    + _STATUS_COUNTING
    + """
function done(summary, latency, requests)
  print_statuses()
  math.randomseed(os.time())
  io.write("sample-token " .. make_token() .. "\\n")
end
"""
)

# init(), the status counting and done() of a script whose requests need no setup.
_COUNTED = (
    """
function init(args)
  statuses = {}
end
"""
    + _STATUS_COUNTING
    + """
function done(summary, latency, requests)
  print_statuses()
end
"""
)

_FORM_POST = (
    """\
-- The same form POST on every request (the identity server's token endpoint).
wrk.method = "POST"
wrk.body = @BODY@
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""
    + _COUNTED
)

_PACED_TOKEN = (
    """\
-- One valid token on every request, paced like the storm: the storm's control.
wrk.headers["Authorization"] = "Bearer " .. @TOKEN@
"""
    + _COUNTED
)

_STATUS_LINE = re.compile(r"^status (\d+) (\d+)$", re.M)
_SAMPLE_TOKEN = re.compile(r"^sample-token (\S+)$", re.M)
_KID_PLACEHOLDER = "\x00kid\x00"


def lua_string(value: str) -> str:
    """`value` as a Lua string literal (JSON escapes are valid Lua escapes for ASCII text)."""
    if not value.isascii():
        raise ValueError("only ASCII strings are embedded in the Lua scripts")
    return json.dumps(value)


def _fill(template: str, **values: str) -> str:
    """`template` with each `@NAME@` replaced by values[NAME] (Lua uses `%` itself)."""
    wanted = set(re.findall(r"@([A-Z_]+)@", template))
    if wanted != set(values):
        raise ValueError(f"Lua template placeholders {sorted(wanted)} != {sorted(values)}")
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    return template


def write_token_cycle(path: Path, tokens_file: Path) -> Path:
    """A wrk script sending the tokens of `tokens_file` (one per line) in turn, one per request."""
    path.write_text(_fill(_TOKEN_CYCLE, TOKENS_FILE=lua_string(str(tokens_file))))
    return path


def write_form_post(path: Path, body: str) -> Path:
    """A wrk script POSTing `body` as application/x-www-form-urlencoded on every request."""
    path.write_text(_fill(_FORM_POST, BODY=lua_string(body)))
    return path


def write_paced_token(path: Path, token: str, *, delay_ms: float) -> Path:
    """A wrk script sending `token` on every request, each connection waiting `delay_ms` before
    each request: valid traffic at the storm's pace, to compare the storm with."""
    text = _fill(_PACED_TOKEN, TOKEN=lua_string(token))
    path.write_text(text + f"\nfunction delay()\n  return {delay_ms:.3f}\nend\n")
    return path


def split_token_header(token: str) -> tuple[str, str, str]:
    """(header JSON before the kid value, header JSON after it, ".payload.signature") of a JWS
    compact token whose header has a `kid`; the header is re-serialised compactly."""
    encoded_header, dot, rest = token.partition(".")
    if not dot:
        raise ValueError("not a JWS compact token")
    padded = encoded_header + "=" * (-len(encoded_header) % 4)
    header = json.loads(base64.urlsafe_b64decode(padded))
    if not isinstance(header, dict) or "kid" not in header:
        raise ValueError("the token header has no kid")
    text = json.dumps({**header, "kid": _KID_PLACEHOLDER}, separators=(",", ":"))
    before, after = text.split(json.dumps(_KID_PLACEHOLDER)[1:-1])
    return before, after, "." + rest


def write_random_kid(path: Path, token: str, *, delay_ms: float = 0.0) -> Path:
    """A wrk script sending `token` with its header's kid replaced by a fresh random one on
    every request (the header re-encoded; payload and signature unchanged). With `delay_ms`,
    each connection waits that long before each request (wrk's delay()): a paced storm."""
    before, after, rest = split_token_header(token)
    text = _fill(
        _RANDOM_KID, BEFORE=lua_string(before), AFTER=lua_string(after), REST=lua_string(rest)
    )
    if delay_ms > 0:
        text += f"\nfunction delay()\n  return {delay_ms:.3f}\nend\n"
    path.write_text(text)
    return path


def parse_status_counts(text: str) -> dict[int, int]:
    """`status <code> <count>` lines printed by the scripts' done() → {code: count}."""
    counts: dict[int, int] = {}
    for code, count in _STATUS_LINE.findall(text):
        counts[int(code)] = counts.get(int(code), 0) + int(count)
    return counts


def parse_sample_token(text: str) -> str | None:
    match = _SAMPLE_TOKEN.search(text)
    return match.group(1) if match else None


def token_header(token: str) -> dict[str, object] | None:
    """The decoded JOSE header of a compact token, or None if it is not base64url JSON."""
    encoded = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except ValueError:
        return None
    return header if isinstance(header, dict) else None
