"""What the bench measures on its lab (lab.py): deploy time, the load and its latency through the load
balancer, wrk's requests/s and p99 inside a host, the serving colour's unit settings, throughput and
resident memory.

Each function measures one thing and returns its figures as JSON; the runs (bench.py, versions.py,
p99_causes.py, ...) choose what to measure and write the results. The load is tests/load/loadgen.py's.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path
from lab import (
    APP,
    LB_URL,
    ROOT,
    WORK,
    Json,
    all_at_once,
    app_hosts,
    container,
    lab_down,
    lab_up,
    log,
    mitogen_environment,
    on_host,
    run,
    serving_colour,
    site,
    write_inventory,
)

sys.path.insert(0, str(ROOT / "tests" / "load"))
from loadgen import LoadConfig, LoadReport, LoadRun  # a script beside the tests, not a package

STEADY_SECONDS = 20  # load before anything changes
LOAD_BOUND_SECONDS = 900  # no load run lasts longer, whatever happens
LOAD_BOUND_REQUESTS = 300_000
WRK_THREADS = 2
WRK_CONNECTIONS = 32
WRK_SECONDS = 10
WRK_WARMUP_SECONDS = 3
DIRECT_PORT = 8001  # the server itself on TCP, inside the host
TUTORIAL_APP_PORT = 8000  # the tutorial's uvicorn, inside the host
TUTORIAL_NGINX_PORT = 8088  # the tutorial's nginx site, inside the host
MEMORY_POLL_SECONDS = 0.5


# --- 2. deploy time -------------------------------------------------------------------------------


def deploy_times(count: int, runner: str) -> Json:
    """Cold deploy and no-change re-run on fresh containers, with plain Ansible or with Mitogen."""
    log(f"deploy time, {count} app host(s), {runner}: fresh containers")
    lab_down()
    lab_up(count)
    inventory = write_inventory(count)
    shutil.rmtree(WORK / "controller-cache", ignore_errors=True)  # a first deploy has no wheels either
    release = ("-e", "django_app_release_id=r1")
    environment = mitogen_environment() if runner == "mitogen" else {}
    cold = site(inventory, *release, environment=environment)
    log(f"  cold {cold['seconds']} s, changed={cold['changed']}")
    rerun = site(inventory, *release, environment=environment)
    log(f"  no-change re-run {rerun['seconds']} s, changed={rerun['changed']}")
    return {"hosts": count, "runner": runner, "cold": cold, "rerun": rerun}


TASK_COST_RUNS = 40


def task_cost(inventory: Path) -> Json:
    """Seconds one module run costs on one host, with plain Ansible and with Mitogen."""
    playbook = str(ROOT / ".venv" / "bin" / "ansible-playbook")
    costs: Json = {"runs": TASK_COST_RUNS}
    for runner, environment in (("ansible", {}), ("mitogen", mitogen_environment())):
        seconds = {}
        for runs in (0, TASK_COST_RUNS):
            began = time.perf_counter()
            run(
                playbook,
                "-i",
                str(inventory),
                "bench/task-cost.yml",
                "-e",
                f"task_cost_runs={runs}",
                env=os.environ | environment,
            )
            seconds[runs] = time.perf_counter() - began
        costs[runner] = round((seconds[TASK_COST_RUNS] - seconds[0]) / TASK_COST_RUNS, 3)
    log(f"one module run on one host: {costs['ansible']} s, with Mitogen {costs['mitogen']} s")
    return costs


def wheelhouse_saving(count: int) -> Json:
    """The shipped wheelhouse (one download, installed with no index) against each host fetching its own.

    The hosts here cannot reach the package index (TLS to it fails from the containers), so each host's
    own fetch is measured as what it costs: the same download, once per host, all at once, from the
    controller's network.
    """
    hosts = app_hosts(count)
    wheelhouse = on_host(hosts[0], f"ls -d /srv/{APP}/wheelhouse/*/ | head -n 1").strip().rstrip("/")
    wheels = on_host(hosts[0], f"ls {wheelhouse}").split()
    pins = sorted(
        "{}=={}".format(*re.match(r"([^-]+)-([^-]+)-", wheel).groups()) for wheel in wheels if wheel.endswith(".whl")
    )
    log(f"wheelhouse: {len(pins)} packages, {count} hosts")
    machine_name = platform.machine()
    platforms = [
        f"--platform={tag}_{machine_name}" for tag in ("manylinux_2_36", "manylinux_2_28", "manylinux2014", "linux")
    ]

    def download(copies: int) -> tuple[float, int]:
        """Seconds for `copies` downloads of the release's wheels at once (the role's pip download), and bytes."""
        targets = [WORK / f"wheel-download-{number}" for number in range(copies)]
        for target in targets:
            shutil.rmtree(target, ignore_errors=True)
        command = [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-cache-dir",
            "--only-binary=:all:",
            "--implementation=cp",
            "--python-version=311",
            "--abi=cp311",
            *platforms,
            *pins,
        ]
        seconds = all_at_once([[*command, "--dest", str(target)] for target in targets], "pip download")
        size = sum(path.stat().st_size for target in targets for path in target.iterdir())
        for target in targets:
            shutil.rmtree(target, ignore_errors=True)
        return seconds, size

    once_seconds, once_bytes = download(1)
    per_host_seconds, per_host_bytes = download(count)
    # The install itself is the same either way: from the shipped wheelhouse, no index, every host at once.
    venv = "/root/bench-venv"  # /tmp is a noexec tmpfs on these hosts
    install = (
        f"rm -rf {venv} && python3 -m venv {venv} && {venv}/bin/pip install -q --no-index "
        f"--find-links {wheelhouse} {' '.join(pins)} && rm -rf {venv}"
    )
    install_seconds = all_at_once(
        [["docker", "exec", container(host), "sh", "-c", install] for host in hosts], "install from the wheelhouse"
    )
    return {
        "hosts": count,
        "packages": len(pins),
        "download_once_seconds": once_seconds,
        "download_once_bytes": once_bytes,
        "download_per_host_seconds": per_host_seconds,
        "download_per_host_bytes": per_host_bytes,
        "wheelhouse_install_seconds": install_seconds,
    }


# --- 4. memory ------------------------------------------------------------------------------------


def stack_rss_kib(host: str) -> dict[str, int]:
    """Resident memory of nginx and of the app's units on one host, in KiB."""
    rss = {"nginx": 0, "app": 0}
    for line in on_host(host, "ps -eo rss=,unit=").splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        kib, unit = int(fields[0]), fields[1]
        if unit == "nginx.service":
            rss["nginx"] += kib
        elif unit.startswith(f"{APP}@") or unit.startswith("tutorial-"):
            rss["app"] += kib
    return rss


def server_processes(host: str) -> int:
    return len([line for line in on_host(host, "ps -eo unit=").split() if line.startswith(f"{APP}@")])


class MemorySampler:
    """Polls every host until stopped; keeps each host's largest total and its process count then."""

    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts
        self.peak: dict[str, Json] = {host: {"kib": 0} for host in hosts}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _poll(self) -> None:
        deadline = time.monotonic() + LOAD_BOUND_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline:
            for host in self.hosts:
                try:
                    rss = stack_rss_kib(host)
                    processes = server_processes(host)
                except RuntimeError:
                    continue
                total = rss["nginx"] + rss["app"]
                if total > self.peak[host]["kib"]:
                    self.peak[host] = {"kib": total, **rss, "server_processes": processes}
            self._stop.wait(MEMORY_POLL_SECONDS)


# --- 1. rollout under load ------------------------------------------------------------------------


def load_config(duration: float) -> LoadConfig:
    # The mix of the rolling scenario: pages, async views, /slow, POST /db and WebSocket sessions.
    return LoadConfig(
        base_url=LB_URL,
        duration=duration,
        max_requests=LOAD_BOUND_REQUESTS,
        http_workers=4,
        request_interval=0.01,
        websocket_session_seconds=15,
    )


def load_figures(report: LoadReport, seconds: float) -> Json:
    fast = report.latency_ms_by_kind.get("get", {})  # GET /, /async, /whoami: not /slow
    return {
        "seconds": round(seconds, 1),
        "sent": report.sent,
        "failed": report.failed,
        "failures": report.failures[:5],
        "p50_ms": fast.get("p50", 0.0),
        "p99_ms": fast.get("p99", 0.0),
        "by_kind": report.by_kind,
        "releases_seen": report.releases_seen,
    }


@contextmanager
def load(label: str) -> Iterator[LoadRun]:
    log(f"  load: {label}")
    with LoadRun(load_config(LOAD_BOUND_SECONDS)) as running:
        yield running


def under_load(label: str, action: Callable[[], Json]) -> Json:
    """The load's figures while action (a playbook run) runs, with the playbook's seconds and changes."""
    began = time.perf_counter()
    with load(label) as running:
        playbook = action()
        report = running.stop()
    figures = load_figures(report, time.perf_counter() - began)
    figures["playbook_seconds"] = playbook["seconds"]
    figures["changed"] = playbook["changed"]
    figures["module_runs"] = playbook.get("module_runs", {})
    log(f"  {label}: {figures['sent']} sent, {figures['failed']} failed, p99 {figures['p99_ms']} ms")
    return figures


def steady_state() -> Json:
    began = time.perf_counter()
    with LoadRun(load_config(STEADY_SECONDS)) as running:
        running.wait(STEADY_SECONDS + 60)
        report = running.stop()
    return load_figures(report, time.perf_counter() - began)


def healthy_through_nginx(host: str) -> bool:
    code = on_host(
        host,
        "curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H 'Host: localhost' http://127.0.0.1/whoami",
        check=False,
    )
    return code.strip() == "200"


def tutorial_restarts(hosts: list[str]) -> Json:
    """The tutorial way: systemctl restart of the app's unit on each host in turn, under the same load."""
    began = time.perf_counter()
    with load("systemctl restart, host by host") as running:
        for host in hosts:
            on_host(host, f"systemctl restart {APP}@{serving_colour(host)}.service")
            for _attempt in range(120):  # back in service within a minute, or the figure says so
                if healthy_through_nginx(host):
                    break
                time.sleep(0.5)
            time.sleep(2)
        report = running.stop()
    return load_figures(report, time.perf_counter() - began)


def rollout_under_load(inventory: Path, server: str, hosts: list[str]) -> Json:
    log(f"rollout under load: {server}")
    # Bring the fleet onto this server first, without load: that switch is not the one measured.
    site(inventory, "-e", f"asgi_server_kind={server}", "-e", f"django_app_release_id={server}-1")
    at_rest = {host: stack_rss_kib(host) for host in hosts}
    steady = steady_state()
    log(f"  steady: {steady['sent']} sent, {steady['failed']} failed, p99 {steady['p99_ms']} ms")
    with MemorySampler(hosts) as memory:
        rollout = under_load(
            f"site.yml to {server}-2",
            lambda: site(inventory, "-e", f"asgi_server_kind={server}", "-e", f"django_app_release_id={server}-2"),
        )
    tutorial = tutorial_restarts(hosts)
    log(f"  tutorial restarts: {tutorial['sent']} sent, {tutorial['failed']} failed, p99 {tutorial['p99_ms']} ms")
    return {
        "server": server,
        "steady": steady,
        "rollout": rollout,
        "tutorial_restart": tutorial,
        "memory_kib": {"at_rest": at_rest, "during_switch": memory.peak},
    }


# --- 3. throughput ---------------------------------------------------------------------------------


WRK_LINE = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
WRK_ERRORS = re.compile(
    r"Non-2xx or 3xx responses: (\d+)|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


def parse_wrk(output: str) -> Json:
    """Requests/s, p99 and errors (non-2xx/3xx answers and socket errors) from wrk --latency."""
    rate = WRK_LINE.search(output)
    p99 = WRK_P99.search(output)
    if not rate or not p99:
        raise RuntimeError(f"wrk printed no rate or p99:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = sum(int(n) for match in WRK_ERRORS.finditer(output) for n in match.groups() if n)
    return {
        "requests_per_second": float(rate.group(1)),
        "p99_ms": round(float(p99.group(1)) * scale, 2),
        "errors": errors,
    }


# What the app host's nginx adds to each request it passes on (its site's proxy_set_header).
PROXY_HEADERS = (
    "X-Real-IP: 127.0.0.1",
    "X-Forwarded-For: 127.0.0.1",
    "X-Forwarded-Proto: http",
    "X-Forwarded-Host: localhost",
)


def wrk(host: str, url: str, headers: tuple[str, ...] = ()) -> Json:
    """wrk inside the host against its own loopback: a warm-up, then the measured run."""
    extra = "".join(f" -H {shlex.quote(header)}" for header in headers)
    base = f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -H 'Host: localhost'{extra} --latency"
    on_host(host, f"{base} -d{WRK_WARMUP_SECONDS}s {url} >/dev/null")
    return {**parse_wrk(on_host(host, f"{base} -d{WRK_SECONDS}s {url}")), "url": url}


def unit_settings(host: str) -> dict[str, Any]:
    """The serving colour's command line, environment and directories, as systemd runs them."""
    colour = serving_colour(host)
    dropin = on_host(host, f"cat /etc/systemd/system/{APP}@{colour}.service.d/instance.conf")
    settings: dict[str, Any] = {"Environment": []}
    for line in dropin.splitlines():
        key, _equals, value = line.partition("=")
        if key == "Environment":
            settings["Environment"].append(value)
        elif key in ("EnvironmentFile", "WorkingDirectory", "ExecStart"):
            settings[key] = value
    # The colour's processes share the drop-in, each binding the socket of its instance.
    settings["socket"] = f"/run/{APP}/%i.sock"
    return settings


def transient_unit(host: str, name: str, settings: dict[str, Any], command: str, port: int) -> None:
    """The command as a transient unit with the colour's settings, once it answers on the port it listens on."""
    properties = [f"--property=Environment={value}" for value in settings["Environment"]]
    properties += [
        f"--property=EnvironmentFile={settings['EnvironmentFile']}",
        f"--property=WorkingDirectory={settings['WorkingDirectory']}",
    ]
    on_host(
        host,
        f"systemctl stop {name} 2>/dev/null; systemctl reset-failed {name} 2>/dev/null; "
        f"systemd-run --unit {name} --uid {APP} --gid {APP} {' '.join(map(shlex.quote, properties))} "
        f"{command}",
        check=True,
    )
    for _attempt in range(60):
        code = on_host(
            host,
            f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 -H 'Host: localhost' "
            f"http://127.0.0.1:{port}/whoami",
            check=False,
        )
        if code.strip() == "200":
            return
        time.sleep(0.5)
    raise RuntimeError(f"{name} on {host} never answered:\n{on_host(host, f'journalctl -u {name} -n 30', check=False)}")


def definition(server: str) -> dict[str, Any]:
    """The server's definition, one file of the asgi_server role."""
    path = ROOT / "roles" / "asgi_server" / "vars" / "main" / f"server_{server}.yml"
    return yaml.safe_load(path.read_text())[f"_asgi_server_definition_{server}"]


def direct_command(server: str, settings: dict[str, Any]) -> str:
    """The serving colour's own command line, listening on TCP instead of its unix socket (its definition's listen)."""
    command, listen = settings["ExecStart"], definition(server)["listen"]
    unix = listen["unix"].format(socket=settings["socket"])
    if unix not in command:
        raise RuntimeError(f"{server}'s command has no {unix}: {command}")
    return command.replace(unix, listen["tcp"].format(host="127.0.0.1", port=DIRECT_PORT))


def throughput(host: str, server: str) -> Json:
    log(f"throughput on {host}: {server}")
    settings = unit_settings(host)
    proxied = wrk(host, "http://127.0.0.1:80/whoami")
    transient_unit(host, "bench-direct", settings, direct_command(server, settings), DIRECT_PORT)
    try:
        direct = wrk(host, f"http://127.0.0.1:{DIRECT_PORT}/whoami")
        # The same, with the headers nginx adds: what parsing them costs the server, apart from proxying.
        direct_headers = wrk(host, f"http://127.0.0.1:{DIRECT_PORT}/whoami", PROXY_HEADERS)
    finally:
        on_host(host, "systemctl stop bench-direct", check=False)
    log(
        f"  proxied {proxied['requests_per_second']}/s, direct {direct['requests_per_second']}/s, "
        f"direct with nginx's headers {direct_headers['requests_per_second']}/s"
    )
    return {"server": server, "proxied": proxied, "direct": direct, "direct_with_proxy_headers": direct_headers}


def max_workers(server: str) -> int:
    """The most workers a server runs safely, from its definition (0: no limit)."""
    return int(definition(server)["max_workers"])


def scaled_by(server: str) -> str:
    """How a server uses more cores: its own workers, or, where it runs none safely, more processes per colour."""
    return "processes" if max_workers(server) == 1 else "workers"


def workers_throughput(inventory: Path, host: str, server: str) -> list[Json]:
    """Requests/s through nginx on one host with 1 process or worker and with one per CPU."""
    cpus = int(on_host(host, "nproc").strip())
    scaling = scaled_by(server)
    measured = []
    for count in sorted({1, cpus}):
        log(f"throughput on {host}: {server} with {count} {scaling}")
        site(
            inventory,
            "-e",
            f"asgi_server_kind={server}",
            "-e",
            f"asgi_server_{scaling}={count}",
            "-e",
            f"django_app_release_id={server}-{scaling[0]}{count}",
        )
        proxied = wrk(host, "http://127.0.0.1:80/whoami")
        log(f"  {proxied['requests_per_second']}/s")
        measured.append({"server": server, "workers": count, "scaled_by": scaling, "cpus": cpus, "proxied": proxied})
    return measured


TUTORIAL_SITE = f"""
# The tutorial's site: proxy_pass to a TCP port, HTTP/1.0 to the upstream, no keepalive.
server {{
    listen 127.0.0.1:{TUTORIAL_NGINX_PORT};
    server_name localhost;
    location / {{
        proxy_pass http://127.0.0.1:{TUTORIAL_APP_PORT};
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }}
}}
"""


def tutorial_throughput(host: str) -> Json:
    """Uvicorn as the tutorials run it, from the same release and worker count, behind the tutorial's nginx site."""
    log(f"throughput on {host}: the tutorial configuration")
    settings = unit_settings(host)
    command = settings["ExecStart"]
    workers = re.search(r"--workers (\d+)", command)
    venv_bin = command.split()[0].rsplit("/", 1)[0]
    tutorial = (
        f"{venv_bin}/uvicorn rollout_entry:application --host 127.0.0.1 --port {TUTORIAL_APP_PORT} "
        f"--workers {workers.group(1) if workers else 1} --loop asyncio --http h11 --no-access-log"
    )
    site_path = "/etc/nginx/conf.d/bench-tutorial.conf"
    on_host(host, f"printf %s {shlex.quote(TUTORIAL_SITE)} > {site_path} && nginx -t -q && systemctl reload nginx")
    transient_unit(host, "bench-tutorial", settings, tutorial, TUTORIAL_APP_PORT)
    try:
        time.sleep(1)
        result = wrk(host, f"http://127.0.0.1:{TUTORIAL_NGINX_PORT}/whoami")
    finally:
        on_host(host, f"systemctl stop bench-tutorial; rm -f {site_path}; systemctl reload nginx", check=False)
    log(f"  tutorial {result['requests_per_second']}/s")
    return {"command": tutorial, **result}
