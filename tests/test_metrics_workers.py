"""`tokengate gateway --workers 2`: /metrics sums every worker, whichever worker a scrape lands on.

The workers share both ports (SO_REUSEPORT), so requests and scrapes are spread between them by
the kernel; each request below opens its own connection so that both workers serve some.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.ports import free_port
from tests.test_cli import stopped_by_sigterm, wait_ready

REQUESTS = 60


def status_of(url: str) -> tuple[int, str]:
    """(status, X-Request-Id) of one GET on a new connection."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http only
            return resp.status, resp.headers["X-Request-Id"]
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, exc.headers["X-Request-Id"]


def request_counts(status_port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{status_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kong_http_requests_total":
                code = sample.labels["code"]
                counts[code] = counts.get(code, 0) + sample.value
    return counts


def test_request_counts_are_summed_over_workers(tmp_path: Path) -> None:
    proxy, status = free_port(), free_port()
    config = tmp_path / "kong.yaml"
    # The route proxies to the gateway's own status API, so no other server is needed.
    config.write_text(
        '_format_version: "3.0"\n'
        "services:\n"
        f"  - name: status-api\n    url: http://127.0.0.1:{status}\n"
        '    routes:\n      - name: status\n        paths: ["/status"]\n'
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokengate",
            "gateway",
            "--config",
            str(config),
            "--workers",
            "2",
            "--listen",
            f"127.0.0.1:{proxy}",
            "--status-listen",
            f"127.0.0.1:{status}",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(status, process)
        time.sleep(0.5)  # the other worker may bind a moment later
        workers = set()
        for i in range(REQUESTS):
            path = "/status/healthz" if i % 3 else "/nothing"
            code, request_id = status_of(f"http://127.0.0.1:{proxy}{path}")
            assert code == (200 if i % 3 else 404)
            workers.add(request_id[:16])  # each worker's request ids carry its own prefix
        assert len(workers) == 2, "the kernel sent every connection to one worker"

        expected = {"200": REQUESTS - REQUESTS // 3, "404": REQUESTS // 3}
        # Other workers publish their figures every second: wait for them once...
        deadline = time.monotonic() + 10
        while request_counts(status) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        # ...then every scrape, whichever worker answers it, shows all of them, never more.
        for _ in range(10):
            assert request_counts(status) == expected
    finally:
        stopped_by_sigterm(process)
    # The run's metrics directory went with it, and its copy of kong.yaml.
    assert not list(temp.iterdir())


def test_a_metrics_directory_from_the_environment_is_ignored_with_a_warning(
    tmp_path: Path,
) -> None:
    """PROMETHEUS_MULTIPROC_DIR set by the user (left from another setup) must not make the
    gateway sum the files an earlier run left there: it keeps its own, and says so."""
    stale = tmp_path / "multiproc"
    stale.mkdir()
    earlier_run = (
        "from prometheus_client import Counter\n"
        "Counter('kong_http_requests', '', ['service', 'route', 'code', 'source'])"
        ".labels('', '', '404', 'exit').inc(1000)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(stale)}
    subprocess.run([sys.executable, "-c", earlier_run], env=env, check=True, timeout=30)
    assert list(stale.iterdir()), "the earlier run left no file to be summed"
    proxy, status = free_port(), free_port()
    config = tmp_path / "kong.yaml"
    config.write_text('_format_version: "3.0"\nservices: []\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "tokengate", "gateway", "--config", str(config),
         "--listen", f"127.0.0.1:{proxy}", "--status-listen", f"127.0.0.1:{status}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_ready(status, process)
        assert status_of(f"http://127.0.0.1:{proxy}/nothing")[0] == 404
        assert request_counts(status) == {"404": 1}
    finally:
        err = stopped_by_sigterm(process)[1]
    assert f"PROMETHEUS_MULTIPROC_DIR={stale} is ignored" in err
