"""Measure what a rollout costs on a lab of local containers; write bench/results.json.

Run by bench/run, which sets up the tools first. Four measurements, each in this one run:

1. deploy time: cold site.yml and a no-change re-run for 1, 6 and 3 app hosts (plus the load
   balancer), and what the shipped wheelhouse saves against each host installing from the index;
2. rollout under load, per server, against the tutorial way (``systemctl restart`` host by host),
   through the load balancer;
3. throughput on one app host: through its nginx, straight to the server (the ceiling), and the
   tutorial configuration (uvicorn without uvloop/httptools, on TCP, nginx without upstream keepalive);
4. resident memory per app host of nginx plus the app's units, at rest and during the switch.

All load goes to 127.0.0.1 (the load balancer's port published on the loopback) or runs inside a
lab container against that container's own loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "load"))
from loadgen import LoadConfig, LoadReport, LoadRun  # noqa: E402  (a script beside the tests, not a package)

WORK = ROOT / ".cache" / "bench"
APP = "demo"
# The servers the asgi_server role defines, one file each.
SERVER_FILES = (ROOT / "roles" / "asgi_server" / "vars" / "main").glob("server_*.yml")
SERVERS = tuple(sorted(path.stem.removeprefix("server_") for path in SERVER_FILES))
FLEET_SIZES = (1, 6, 3)  # the 3-host fleet is built last and stays for the other measurements
MAX_HOSTS = 12  # the most app hosts any measurement starts (bench/scale.py)
ROLLOUT_HOSTS = 3
PREFIX = "django-asgi-bench"
NETWORK = "django-asgi-bench"
SUBNET = "172.30.60.0/24"
LB_ADDRESS = "172.30.60.10"
LB_PORT = 18380  # published on 127.0.0.1
LB_URL = f"http://127.0.0.1:{LB_PORT}"

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

Json = dict[str, Any]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*argv: str, check: bool = True, capture: bool = True, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, check=False, text=True, capture_output=capture, env=env, timeout=3600, cwd=ROOT)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} exited {result.returncode}:\n{(result.stdout or '')[-3000:]}"
            f"\n{(result.stderr or '')[-3000:]}"
        )
    return result.stdout or ""


def container(host: str) -> str:
    return f"{PREFIX}-{host}"


def on_host(host: str, command: str, check: bool = True) -> str:
    return run("docker", "exec", container(host), "sh", "-c", command, check=check)


def app_hosts(count: int) -> list[str]:
    return [f"app{number}" for number in range(1, count + 1)]


# --- the lab ------------------------------------------------------------------------------------


def lab_config(count: int) -> Path:
    """A hosts file for lab/up.sh and lab/down.sh: the load balancer and `count` app hosts."""
    lines = [f"lb {LB_ADDRESS} {LB_PORT} -"]
    lines += [f"{host} {address(number)} - -" for number, host in enumerate(app_hosts(count), start=1)]
    path = WORK / f"hosts-{count}.sh"
    path.write_text(
        "# shellcheck shell=bash disable=SC2034\n# Written by bench/bench.py.\n"
        f"LAB_NETWORK={NETWORK}\nLAB_PREFIX={PREFIX}\nLAB_SUBNET={SUBNET}\n"
        "LAB_IMAGE=django-asgi-lab:bookworm\nLAB_HOSTS=(\n" + "".join(f'  "{line}"\n' for line in lines) + ")\n"
    )
    return path


def lab_down() -> None:
    run("lab/down.sh", env=os.environ | {"LAB_CONFIG": str(lab_config(MAX_HOSTS))})


def lab_up(count: int) -> None:
    run("lab/up.sh", env=os.environ | {"LAB_CONFIG": str(lab_config(count))})


def address(number: int) -> str:
    """App host `number`'s address (1, 2, ...); the load balancer's is LB_ADDRESS."""
    return f"172.30.60.{10 + number}"


def write_inventory(count: int, ssh: bool = False) -> Path:
    """The lab's settings, with one SQLite database per host so no database host is needed. Reached
    with docker exec as root, or with ssh as the lab's own inventory does: SSH as the deploy user, sudo
    (the key and the hosts' keys lab/up.sh wrote)."""
    inventory = WORK / f"inventory-{count}{'-ssh' if ssh else ''}"
    shutil.rmtree(inventory, ignore_errors=True)
    inventory.mkdir(parents=True)
    keys = ROOT / ".cache" / "ssh" / PREFIX
    connection = (
        {
            "ansible_connection": "ssh",
            "ansible_user": "deploy",
            "ansible_become": True,
            "ansible_ssh_private_key_file": str(keys / "id_ed25519"),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={keys / 'known_hosts'} -o StrictHostKeyChecking=yes",
        }
        if ssh
        # community.docker.docker, by the name Mitogen also knows.
        else {"ansible_connection": "docker", "ansible_user": "root"}
    )
    hosts = {
        "all": {
            "vars": {**connection, "django_app_name": APP},
            "children": {
                "load_balancers": {"hosts": {"lb": {"ansible_host": LB_ADDRESS if ssh else container("lb")}}},
                "app_servers": {
                    "hosts": {
                        host: {
                            "ansible_host": address(number) if ssh else container(host),
                            "load_balancer_backend_address": address(number),
                        }
                        for number, host in enumerate(app_hosts(count), start=1)
                    },
                    "vars": {
                        "django_app_source": str(ROOT / "examples" / "demo"),
                        "django_app_asgi_module": "demo.asgi:application",
                        "django_app_migrate_once": False,
                        "django_app_controller_cache": str(WORK / "controller-cache"),
                        "django_app_env": {
                            "DEMO_SECRET_KEY": "bench-only-not-a-secret-61d7",
                            "DEMO_DATABASE_PATH": f"/srv/{APP}/shared/db.sqlite3",
                        },
                        "nginx_proxy_trusted_proxies": [f"{LB_ADDRESS}/32"],
                    },
                },
            },
        }
    }
    # JSON is YAML, and needs no YAML library here.
    (inventory / "hosts.yml").write_text(json.dumps(hosts, indent=1) + "\n")
    return inventory / "hosts.yml"


# --- Ansible --------------------------------------------------------------------------------------


RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def mitogen_environment() -> dict[str, str]:
    """Ansible run by Mitogen's strategy: one Python interpreter per host, kept for the whole run."""
    import ansible_mitogen  # pinned in requirements-dev.txt

    strategies = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(strategies), "ANSIBLE_STRATEGY": "mitogen_linear"}


def playbook_command(inventory: Path, playbook: str, *extra: str) -> list[str]:
    """ansible-playbook of the controller's venv on an inventory, below the hosts' priority: the controller is
    another machine in a real fleet; here it shares the CPUs with the hosts it drives and the load it measures."""
    return [
        "nice",
        "-n",
        "10",
        str(ROOT / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        str(inventory),
        playbook,
        *extra,
    ]


def site(
    inventory: Path,
    *extra: str,
    environment: dict[str, str] | None = None,
    playbook: str = "site.yml",
    tree: Path = ROOT,
    check: bool = True,
) -> Json:
    """Run site.yml (or another playbook) of tree; return wall and controller CPU seconds, the recap and
    the module runs on each host (bench/callback_plugins/module_runs.py). A run that fails raises, unless
    check is false: then its exit code is in the result."""
    counts = WORK / "module-runs.json"
    counts.unlink(missing_ok=True)
    counting = {
        "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "bench" / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "module_runs",
        "MODULE_RUNS_OUTPUT": str(counts),
    }
    before = os.times()
    began = time.perf_counter()
    result = subprocess.run(
        playbook_command(inventory, playbook, *extra),
        env=os.environ | counting | (environment or {}),
        cwd=tree,
        text=True,
        capture_output=True,
        timeout=3600,
        check=False,
    )
    seconds = time.perf_counter() - began
    after = os.times()
    output = result.stdout + result.stderr
    (WORK / "last-playbook.log").write_text(output)
    if check and result.returncode != 0:
        raise RuntimeError(f"{playbook} {' '.join(extra)} failed:\n{output[-4000:]}")
    recap = {host: {"ok": int(ok), "changed": int(changed)} for host, ok, changed, _u, _f in RECAP.findall(output)}
    counted = json.loads(counts.read_text()) if counts.exists() else {"hosts": {}, "plays": []}
    return {
        "returncode": result.returncode,
        "seconds": round(seconds, 1),
        "controller_cpu_seconds": round(
            (after.children_user - before.children_user) + (after.children_system - before.children_system), 1
        ),
        "changed": sum(host["changed"] for host in recap.values()),
        "recap": recap,
        "module_runs": counted["hosts"],
        "plays": counted["plays"],
    }


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


def all_at_once(commands: list[list[str]], what: str) -> float:
    """Run the commands side by side; seconds until the last one ends. Any failure is fatal."""
    began = time.perf_counter()
    processes = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for command in commands
    ]
    for process in processes:
        _output, error = process.communicate(timeout=1800)
        if process.returncode != 0:
            raise RuntimeError(f"{what} failed: {error[-2000:]}")
    return round(time.perf_counter() - began, 1)


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


def serving_colour(host: str) -> str:
    return on_host(host, f"cat /var/lib/{APP}/active-colour").strip()


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


# --- the run ---------------------------------------------------------------------------------------


def machine() -> Json:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME").strip(),
        "docker": run("docker", "version", "-f", "{{.Server.Version}}").strip(),
        "python": platform.python_version(),
        "ansible_core": run(str(ROOT / ".venv" / "bin" / "ansible"), "--version").splitlines()[0],
        "commit": run("git", "rev-parse", "--short", "HEAD", check=False).strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def only_wheelhouse(options: argparse.Namespace) -> int:
    """Re-measure the wheelhouse figure alone and put it in the results of the last full run."""
    results = json.loads(options.output.read_text())
    count = max(FLEET_SIZES)
    try:
        lab_down()
        lab_up(count)
        shutil.rmtree(WORK / "controller-cache", ignore_errors=True)
        site(write_inventory(count), "-e", "django_app_release_id=r1")
        results["wheelhouse"] = wheelhouse_saving(count) | {
            "command": "bench/run --only-wheelhouse",
            "machine": machine(),
        }
    finally:
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {options.output}")
        if not options.keep:
            lab_down()
    return 0


def replace_server(entries: list[Json], new: list[Json]) -> list[Json]:
    """entries without those of new's servers, then new."""
    servers = {entry["server"] for entry in new}
    return [entry for entry in entries if entry["server"] not in servers] + new


def named_servers(option: str, value: str) -> list[str]:
    """The servers an --only-... option names, each one the role defines."""
    servers = value.split(",")
    unknown = set(servers) - set(SERVERS)
    if unknown:
        raise SystemExit(f"{option}: no such server {sorted(unknown)}; the choices are {', '.join(SERVERS)}")
    return servers


def save_partial_run(
    options: argparse.Namespace, results: Json, key: str, arguments: str, measured: list[str], began: float
) -> None:
    """Record which servers a partial run measured, write the results and remove the lab (unless --keep)."""
    results[key] = {
        "command": f"bench/run {arguments}",
        "servers": measured,
        "seconds": round(time.perf_counter() - began),
        "machine": machine(),
    }
    options.output.write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {options.output}")
    if not options.keep:
        lab_down()


def only_servers(options: argparse.Namespace) -> int:
    """Measure the named servers alone (rollout under load, throughput, workers) into the last full run's results."""
    results = json.loads(options.output.read_text())
    servers = named_servers("--only-servers", options.only_servers)
    began = time.perf_counter()
    measured: list[str] = []
    try:
        lab_down()
        lab_up(ROLLOUT_HOSTS)
        inventory = write_inventory(ROLLOUT_HOSTS)
        hosts = app_hosts(ROLLOUT_HOSTS)
        site(inventory, "-e", "django_app_release_id=r1")
        on_host(hosts[0], "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null")
        for server in servers:
            rollout = rollout_under_load(inventory, server, hosts)
            served = throughput(hosts[0], server)
            workers = workers_throughput(inventory, hosts[0], server)
            # A server's figures go in together, once all three are measured.
            results["rollouts"] = replace_server(results["rollouts"], [rollout])
            results["throughput"] = replace_server(results["throughput"], [served])
            results["workers"] = replace_server(results.get("workers", []), workers)
            measured.append(server)
    finally:
        save_partial_run(options, results, "servers_run", f"--only-servers {options.only_servers}", measured, began)
    return 0


def only_workers(options: argparse.Namespace) -> int:
    """Measure requests/s with 1 and N workers or processes for the named servers alone, into the last results."""
    results = json.loads(options.output.read_text())
    servers = named_servers("--only-workers", options.only_workers)
    began = time.perf_counter()
    measured: list[str] = []
    try:
        lab_down()
        lab_up(1)
        inventory = write_inventory(1)
        host = app_hosts(1)[0]
        site(inventory, "-e", "django_app_release_id=r1")
        on_host(host, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null")
        for server in servers:
            results["workers"] = replace_server(results.get("workers", []), workers_throughput(inventory, host, server))
            measured.append(server)
    finally:
        save_partial_run(options, results, "workers_run", f"--only-workers {options.only_workers}", measured, began)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    parser.add_argument(
        "--only-wheelhouse",
        action="store_true",
        help="measure the wheelhouse alone, on a cold-deployed fleet, into the existing results",
    )
    parser.add_argument(
        "--only-servers",
        metavar="NAMES",
        help="measure these servers alone (comma-separated), on a fresh 3-host fleet, into the existing results",
    )
    parser.add_argument(
        "--only-workers",
        metavar="NAMES",
        help="measure these servers' requests/s with 1 and N workers or processes alone, on one host, into the results",
    )
    options = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if options.only_wheelhouse:
        return only_wheelhouse(options)
    if options.only_servers:
        return only_servers(options)
    if options.only_workers:
        return only_workers(options)
    results: Json = {
        "command": "bench/run",
        "machine": machine(),
        "deploy": [],
        "deploy_mitogen": [],
        "rollouts": [],
        "throughput": [],
        "workers": [],
    }
    began = time.perf_counter()
    try:
        for count in FLEET_SIZES:
            try:
                results["deploy_mitogen"].append(deploy_times(count, "mitogen"))
            except RuntimeError as error:  # a third-party strategy; plain Ansible's figures still count
                results["deploy_mitogen"].append({"hosts": count, "error": str(error)[-2000:]})
            results["deploy"].append(deploy_times(count, "ansible"))  # last: the 3-host fleet stays
            if count == max(FLEET_SIZES):
                try:
                    results["wheelhouse"] = wheelhouse_saving(count)
                except RuntimeError as error:  # the hosts may not reach the index; the rest still counts
                    results["wheelhouse"] = {"error": str(error)[-2000:]}
        inventory = write_inventory(ROLLOUT_HOSTS)
        hosts = app_hosts(ROLLOUT_HOSTS)
        results["task_cost_seconds"] = task_cost(inventory)
        on_host(hosts[0], "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null")
        for server in SERVERS:
            results["rollouts"].append(rollout_under_load(inventory, server, hosts))
            results["throughput"].append(throughput(hosts[0], server))
            results["workers"] += workers_throughput(inventory, hosts[0], server)
            if server == "uvicorn":
                results["tutorial_throughput"] = tutorial_throughput(hosts[0])
    finally:
        results["bench_seconds"] = round(time.perf_counter() - began)
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {options.output}")
        if not options.keep:
            lab_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
