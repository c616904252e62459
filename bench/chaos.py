"""A fault campaign: many rollouts under load, one random fault at a random moment of each, invariants after each.

On a lab of its own (lab/up.sh with its own hosts file: a load balancer, three app hosts and a
PostgreSQL host, containers django-asgi-chaos-*, network 172.30.63.0/24, the load balancer on
127.0.0.1:18680; reached over SSH as the deploy user, as the lab is), for each run:

1. start site.yml to a new release (a release id of its own) under the load generator's mix through
   the load balancer (tests/load/loadgen.py: GETs, /slow, POST /db writes, WebSocket sessions);
2. at a random moment of it (after a random number of its tasks, or after a random delay, both drawn
   within what a rollout without a fault took on this lab) inject one fault, the kind drawn so that
   each kind comes up as evenly as the number of runs allows:

   - ``controller_sigkill``: SIGKILL to the playbook's process group (ansible-playbook and its workers);
   - ``controller_sigint``: SIGINT to the same group (an operator's Ctrl-C, a cancelled CI job);
   - ``server_kill``: kill -9 of every process of an app host's serving colour;
   - ``app_nginx_kill``: kill -9 of an app host's nginx master;
   - ``lb_nginx_kill``: kill -9 of the load balancer's nginx master;
   - ``host_restart``: ``docker restart`` of an app host;
   - ``network_cut``: an app host off the network for 5-20 s (``docker network disconnect``/``connect``);
   - ``db_restart``: PostgreSQL restarted;

3. wait for that run to end (or, if the fault let it go on, to finish), then run site.yml again as an
   operator would, to the same release (a lock left by this controller's ended run is taken over);
4. check the invariants: the re-run succeeded; every app host serves the new release, on one colour,
   through its nginx and through the load balancer; no rollout lock on any host; no app host marked
   down on the load balancer; only the serving colour's units running; every write the load generator
   got a 2xx for is in the database; no failed request for the faults the design covers
   (controller killed or interrupted, a server killed, an app host's nginx killed); for the others the
   failed requests are recorded with the window they spread over; neither the app's secret key nor
   the database password in any playbook output or load generator failure.

Any breach fails the campaign (exit 1), printed with the seed and run that replay it
(``--seed S --runs N --only K``). Writes bench/chaos.json (every run, its fault, moment, figures and
breaches), which bench/report.py turns into a section of bench/RESULTS.md. On 2 CPUs a run takes
3-5 minutes:

    .venv/bin/python bench/chaos.py [--runs 30] [--seed 1] [--only K] [--keep] [--output bench/chaos.json]

--keep leaves the lab running (``LAB_CONFIG=.cache/chaos/hosts.sh lab/down.sh`` removes it); each
run's playbook output is in .cache/chaos/run-K-{faulted,rerun}.log.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path
from measure import LoadConfig, LoadRun

import lab
from lab import ROOT

Json = dict[str, Any]

WORK = ROOT / ".cache" / "chaos"
APP = "demo"
PREFIX = "django-asgi-chaos"
NETWORK = "django-asgi-chaos"
SUBNET = "172.30.63.0/24"
LB_ADDRESS = "172.30.63.10"
DB_ADDRESS = "172.30.63.20"
LB_PORT = 18680  # published on 127.0.0.1
LB_URL = f"http://127.0.0.1:{LB_PORT}"
APP_HOSTS = ("app1", "app2", "app3")
SERVERS = {"app1": "uvicorn", "app2": "daphne", "app3": "hypercorn"}
LOCK = f"/run/lock/django-asgi-rollout-{APP}.json"
# The lab's own values, written in no other place; a run's output must never show them.
SECRET_KEY = "chaos-lab-only-key-7e3b91d4"  # noqa: S105  (a lab-only test value)
DB_PASSWORD = "chaos-lab-only-db-4a8f02"  # noqa: S105
SECRETS = (SECRET_KEY, DB_PASSWORD)

FAULTS = (
    "controller_sigkill",
    "controller_sigint",
    "server_kill",
    "app_nginx_kill",
    "lb_nginx_kill",
    "host_restart",
    "network_cut",
    "db_restart",
)
# The faults the design covers without a failed request; the others are measured.
COVERED = frozenset({"controller_sigkill", "controller_sigint", "server_kill", "app_nginx_kill"})
# A process killed -9 takes what it holds with it: the WebSocket sessions (nginx cannot move an open
# connection to another process) and a write in flight, which the load balancer rightly does not send
# again (it may have been done: POST is not idempotent). So for a server or an app host's nginx killed,
# at most the sessions and writes the load keeps going at once may fail; every GET must still succeed,
# retried on another host by the load balancer. The controller's faults may fail nothing at all.
CUTS_HELD_SESSIONS = frozenset({"server_kill", "app_nginx_kill"})
COVERED_FAILURES = "failed requests for a fault the design covers"
PLAYBOOK_BOUND = 1200  # seconds any one playbook run may take before its group is killed
INTERRUPT_BOUND = 120  # seconds a SIGINT'd controller has to end before it is killed
UNITS_SETTLE = 90  # seconds the old colour may still drain after a re-run (the drain timeout is 60)
LOAD_BOUND = 3600  # seconds the load of one run may last at most


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def container(host: str) -> str:
    return f"{PREFIX}-{host}"


def address(host: str) -> str:
    addresses = {"lb": LB_ADDRESS, "db": DB_ADDRESS} | {name: f"172.30.63.{11 + n}" for n, name in enumerate(APP_HOSTS)}
    return addresses[host]


def docker(*argv: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *argv], text=True, capture_output=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(argv)} exited {result.returncode}: {result.stderr[-1000:]}")
    return result


def on_host(host: str, command: str, check: bool = True, timeout: float = 60) -> str:
    return docker("exec", container(host), "sh", "-c", command, check=check, timeout=timeout).stdout


# --- the lab --------------------------------------------------------------------------------------


def lab_config() -> Path:
    lines = [f"lb {LB_ADDRESS} {LB_PORT} -", *(f"{host} {address(host)} - -" for host in APP_HOSTS)]
    lines.append(f"db {DB_ADDRESS} - -")
    path = WORK / "hosts.sh"
    path.write_text(
        "# shellcheck shell=bash disable=SC2034\n# Written by bench/chaos.py.\n"
        f"LAB_NETWORK={NETWORK}\nLAB_PREFIX={PREFIX}\nLAB_SUBNET={SUBNET}\n"
        "LAB_IMAGE=django-asgi-lab:bookworm\nLAB_HOSTS=(\n" + "".join(f'  "{line}"\n' for line in lines) + ")\n"
    )
    return path


def lab_script(action: str) -> None:
    lab.run(f"lab/{action}.sh", env=os.environ | {"LAB_CONFIG": str(lab_config())})


def write_inventory() -> Path:
    keys = ROOT / ".cache" / "ssh" / PREFIX
    app_env = {
        "DEMO_SECRET_KEY": SECRET_KEY,
        "DEMO_DB_HOST": DB_ADDRESS,
        "DEMO_DB_NAME": APP,
        "DEMO_DB_USER": APP,
        "DEMO_DB_PASSWORD": DB_PASSWORD,
    }
    inventory = {
        "all": {
            "vars": {
                "ansible_user": "deploy",
                "ansible_become": True,
                "ansible_ssh_private_key_file": str(keys / "id_ed25519"),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={keys / 'known_hosts'} -o StrictHostKeyChecking=yes",
                "django_app_name": APP,
                "rollout_canary_seconds": 0,
                "lab_database_password": DB_PASSWORD,
            },
            "children": {
                "load_balancers": {"hosts": {"lb": {"ansible_host": LB_ADDRESS}}},
                "databases": {"hosts": {"db": {"ansible_host": DB_ADDRESS}}},
                "app_servers": {
                    "hosts": {
                        host: {
                            "ansible_host": address(host),
                            "load_balancer_backend_address": address(host),
                            "asgi_server_kind": SERVERS[host],
                        }
                        for host in APP_HOSTS
                    },
                    "vars": {
                        "django_app_source": str(ROOT / "examples" / "demo"),
                        "django_app_asgi_module": "demo.asgi:application",
                        "django_app_controller_cache": str(WORK / "controller-cache"),
                        "django_app_env": app_env,
                        "nginx_proxy_trusted_proxies": [f"{LB_ADDRESS}/32"],
                    },
                },
            },
        }
    }
    path = WORK / "inventory" / "hosts.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(inventory, indent=1) + "\n")  # JSON is YAML
    return path


def playbook(inventory: Path, playbook_name: str, *extra: str, log_path: Path) -> tuple[int, float, str]:
    """Run a playbook to its end (bounded); its exit code, seconds and output."""
    began = time.perf_counter()
    with log_path.open("w") as out:
        process = subprocess.Popen(
            lab.playbook_command(inventory, playbook_name, *extra),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=os.environ | {"ANSIBLE_FORCE_COLOR": "0"},
        )
        try:
            process.wait(timeout=PLAYBOOK_BOUND)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
    return process.returncode, round(time.perf_counter() - began, 1), log_path.read_text()


def heal_containers() -> list[str]:
    """Every lab container running and on the network with its address; what had to be done."""
    done = []
    for host in ("lb", *APP_HOSTS, "db"):
        name = container(host)
        state = docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
        if state != "running":
            docker("start", name)
            done.append(f"started {host}")
        networks = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name).stdout
        if NETWORK not in json.loads(networks or "{}"):
            docker("network", "connect", "--ip", address(host), NETWORK, name)
            done.append(f"reconnected {host}")
    for host in ("lb", *APP_HOSTS, "db"):
        wait_systemd(host)
    return done


def wait_systemd(host: str, bound: float = 120) -> None:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        state = on_host(host, "systemctl is-system-running 2>/dev/null || true", check=False).strip()
        if state in ("running", "degraded"):
            # sshd answers: the controller reaches the host again.
            if on_host(host, "systemctl is-active ssh", check=False).strip() == "active":
                return
        time.sleep(1)
    raise RuntimeError(f"{host} did not come back within {bound} s")


# --- the faults -------------------------------------------------------------------------------------


class Fault:
    """One fault, injected in a thread of its own so the playbook's output keeps being read."""

    def __init__(self, kind: str, rng: random.Random, process: subprocess.Popen) -> None:
        self.kind = kind
        self.process = process
        self.target = (
            rng.choice(APP_HOSTS) if kind in ("server_kill", "app_nginx_kill", "host_restart", "network_cut") else None
        )
        if kind == "lb_nginx_kill":
            self.target = "lb"
        if kind == "db_restart":
            self.target = "db"
        self.cut_seconds = rng.randint(5, 20) if kind == "network_cut" else 0
        self.detail = ""
        self.injected_at: float | None = None
        self.thread: threading.Thread | None = None
        self.error = ""

    def inject(self, at: float) -> None:
        self.injected_at = at
        self.thread = threading.Thread(target=self._guarded, name=f"fault-{self.kind}", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 300) -> None:
        if self.thread:
            self.thread.join(timeout)

    def _guarded(self) -> None:
        try:
            self._inject()
        except Exception as error:  # recorded: a fault that could not be injected is a result too
            self.error = repr(error)

    def _inject(self) -> None:
        kind, target = self.kind, self.target
        if kind == "controller_sigkill":
            os.killpg(self.process.pid, signal.SIGKILL)
        elif kind == "controller_sigint":
            os.killpg(self.process.pid, signal.SIGINT)
        elif kind == "server_kill":
            self.detail = on_host(
                target,
                f"colour=$(cat /var/lib/{APP}/active-colour); "
                f"pids=$(systemctl show -p MainPID --value $(systemctl list-units --plain --no-legend --state=running "
                f"'{APP}@'$colour'*' | awk '{{print $1}}') | grep -v '^0$' | tr '\\n' ' '); "
                'echo "colour $colour pids $pids"; '
                f"for unit in $(systemctl list-units --plain --no-legend --state=running '{APP}@'$colour'*' "
                "| awk '{print $1}'); do systemctl kill --signal=KILL $unit; done",
            ).strip()
        elif kind in ("app_nginx_kill", "lb_nginx_kill"):
            self.detail = on_host(target, "pid=$(cat /run/nginx.pid); echo master $pid; kill -9 $pid").strip()
        elif kind == "host_restart":
            docker("restart", container(target), timeout=300)
        elif kind == "network_cut":
            docker("network", "disconnect", NETWORK, container(target))
            time.sleep(self.cut_seconds)
            docker("network", "connect", "--ip", address(target), NETWORK, container(target))
        elif kind == "db_restart":
            on_host("db", "systemctl restart postgresql", timeout=120)


def run_with_fault(inventory: Path, release: str, kind: str, rng: random.Random, baseline: Json, label: str) -> Json:
    """site.yml to release, the fault injected at a random moment of it; what happened."""
    by_task = rng.random() < 0.5
    task_number = rng.randint(1, max(baseline["tasks"] - 1, 1))
    delay = round(rng.uniform(1.0, max(baseline["seconds"] * 0.95, 2.0)), 1)
    log_path = WORK / f"run-{label}-faulted.log"
    began = time.monotonic()
    tasks = 0
    fault: Fault | None = None
    last_task = ""
    with log_path.open("w") as out:
        process = subprocess.Popen(
            lab.playbook_command(inventory, "site.yml", "-e", f"django_app_release_id={release}"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=os.environ | {"ANSIBLE_FORCE_COLOR": "0"},
        )
        fault = Fault(kind, rng, process)
        lines: list[str] = []
        # Lines as they come, in a thread: the moment can be a delay, with no line arriving.
        reader_done = threading.Event()

        def read() -> None:
            for line in process.stdout:
                out.write(line)
                lines.append(line)
            reader_done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while not reader_done.is_set() and time.monotonic() - began < PLAYBOOK_BOUND:
            if fault.injected_at is None:
                tasks = sum(1 for line in list(lines) if line.startswith("TASK ["))
                elapsed = time.monotonic() - began
                if (by_task and tasks >= task_number) or (not by_task and elapsed >= delay):
                    last_task = next((line.strip() for line in reversed(list(lines)) if line.startswith("TASK [")), "")
                    fault.inject(round(elapsed, 1))
            reader_done.wait(0.05)
        if not reader_done.is_set():
            os.killpg(process.pid, signal.SIGKILL)
        if kind == "controller_sigint" and fault.injected_at is not None:
            try:
                process.wait(timeout=INTERRUPT_BOUND)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        reader.join(timeout=60)
    ended = round(time.monotonic() - began, 1)
    if fault.injected_at is None and kind.startswith("controller_"):
        # The run ended before its moment came: there is no controller left to stop.
        last_task = "(not injected: the run ended before its moment)"
    elif fault.injected_at is None:
        # The run ended before its moment came: the fault lands on the fleet at rest, before the re-run.
        last_task = "(after the run ended)"
        fault.inject(ended)
    fault.join(timeout=300)
    return {
        "moment": {"by": "task", "task_number": task_number} if by_task else {"by": "delay", "seconds": delay},
        "injected_at_seconds": fault.injected_at,
        "injected_during": last_task.removeprefix("TASK [").split("]")[0]
        if last_task.startswith("TASK [")
        else last_task,
        "target": fault.target,
        "cut_seconds": fault.cut_seconds or None,
        "detail": fault.detail,
        "injection_error": fault.error,
        "faulted_exit_code": process.returncode,
        "faulted_seconds": ended,
        "faulted_output": log_path.read_text(),
    }


# --- the invariants -------------------------------------------------------------------------------------


def whoami(host: str) -> Json:
    """/whoami through an app host's own nginx, from inside that host."""
    answer = on_host(host, "curl -sS --max-time 10 -H 'Host: localhost' http://127.0.0.1/whoami", check=False)
    try:
        return json.loads(answer)
    except ValueError:
        return {"error": answer[:200]}


def through_load_balancer(requests: int = 12) -> list[Json]:
    answers = []
    for _attempt in range(requests):
        try:
            answers.append(bench_get(f"{LB_URL}/whoami"))
        except OSError as error:
            answers.append({"error": repr(error)})
    return answers


def bench_get(url: str) -> Json:
    import urllib.request

    request = urllib.request.Request(url, headers={"Connection": "close"})  # noqa: S310  (loopback only)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def running_units(host: str) -> list[str]:
    listing = on_host(host, f"systemctl list-units --plain --no-legend --state=running '{APP}@*'", check=False)
    return sorted(line.split()[0] for line in listing.splitlines() if line.strip())


def colour_of(unit: str) -> str:
    return unit.split("@", 1)[1].removesuffix(".service").split("-")[0]


def database_ids() -> set[int]:
    listing = on_host("db", f"runuser -u postgres -- psql -d {APP} -At -c 'SELECT id FROM hello_hit'", timeout=120)  # noqa: S608
    return {int(line) for line in listing.split()}


def failure_window(seconds: list[float]) -> float:
    """The longest stretch of failures, each within 2 s of the one before: how long clients saw errors."""
    longest, start, previous = 0.0, None, None
    for moment in sorted(seconds):
        if previous is None or moment - previous > 2.0:
            start = moment
        previous = moment
        longest = max(longest, moment - start)
    return round(longest, 1) if seconds else 0.0


def covered_breach(kind: str, by_kind: dict[str, dict[str, int]], config: LoadConfig) -> str:
    """What failed beyond what a covered fault may cost ('' when nothing did): no GET, and no WebSocket
    session or write but those a killed server or nginx held."""
    if kind not in COVERED:
        return ""
    failed = {name: counts["failed"] for name, counts in by_kind.items() if counts["failed"]}
    held = kind in CUTS_HELD_SESSIONS
    allowed = {"websocket": config.websocket_sessions if held else 0, "post": config.post_workers if held else 0}
    beyond = {name: count for name, count in failed.items() if count > allowed.get(name, 0)}
    if beyond:
        return f"{COVERED_FAILURES}: {failed} (at most {allowed}, and no GET)"
    return ""


def judged(run: Json, config: LoadConfig) -> list[str]:
    """A run's breaches under the rule above, whatever rule the run was recorded under (a run recorded before
    it counted every failure of a covered fault as a breach, those a killed process held included)."""
    others = [breach for breach in run["breaches"] if COVERED_FAILURES not in breach]
    covered = covered_breach(run["fault"], run["load"]["by_kind"], config)
    return others + ([covered] if covered else [])


def invariants(release: str, kind: str, load: Json, outputs: list[str]) -> tuple[Json, list[str]]:
    """What the fleet looks like after the re-run, and every breach of a promise."""
    breaches: list[str] = []
    state: Json = {"hosts": {}}
    # The old colour stops within the drain timeout of its switch: allow that much, bounded.
    deadline = time.monotonic() + UNITS_SETTLE
    while True:
        units = {host: running_units(host) for host in APP_HOSTS}
        colours = {host: on_host(host, f"cat /var/lib/{APP}/active-colour", check=False).strip() for host in APP_HOSTS}
        mixed = [h for h in APP_HOSTS if {colour_of(u) for u in units[h]} != {colours[h]}]
        if not mixed or time.monotonic() > deadline:
            break
        time.sleep(2)
    for host in APP_HOSTS:
        answer = whoami(host)
        state["hosts"][host] = {"colour": colours[host], "units": units[host], "whoami": answer}
        if answer.get("release") != release:
            breaches.append(f"{host} serves {answer.get('release') or answer.get('error')!r}, not {release}")
        if answer.get("colour") != colours[host]:
            breaches.append(
                f"{host} answers from colour {answer.get('colour')!r}, its active colour is {colours[host]!r}"
            )
        if host in mixed:
            breaches.append(f"{host}: units {units[host]} running beside its colour {colours[host]!r} after the drain")
    answers = through_load_balancer()
    state["load_balancer"] = sorted({f"{a.get('release')}/{a.get('server')}/{a.get('colour')}" for a in answers})
    if {a.get("release") for a in answers} != {release}:
        breaches.append(f"the load balancer answers {state['load_balancer']}")
    locks = [host for host in ("lb", *APP_HOSTS) if on_host(host, f"test -e {LOCK} && echo held", check=False).strip()]
    if locks:
        breaches.append(f"rollout lock left on {locks}")
    down = on_host("lb", f"grep -l ' down;' /etc/nginx/{APP}-backends/*.conf", check=False).split()
    configured = on_host("lb", f"ls /etc/nginx/{APP}-backends/", check=False).split()
    state["backends"] = {"configured": configured, "down": down}
    if down or len(configured) != len(APP_HOSTS):
        breaches.append(f"load balancer backends: {configured}, marked down: {down}")
    stored = database_ids()
    written = load["written_ids"]
    missing = sorted(set(written) - stored)
    state["writes"] = {"acknowledged": len(written), "distinct": len(set(written)), "missing": len(missing)}
    if missing or len(set(written)) != len(written):
        breaches.append(f"{len(missing)} acknowledged writes missing from the database (first {missing[:10]})")
    covered = covered_breach(kind, load["by_kind"], load_config())
    if covered:
        breaches.append(f"{covered}: {load['failures'][:5]}")
    leaked = [
        name
        for name, secret in zip(("secret key", "database password"), SECRETS, strict=True)
        if any(secret in text for text in [*outputs, json.dumps(load["failures"])])
    ]
    if leaked:
        breaches.append(f"{', '.join(leaked)} in the output")
    return state, breaches


# --- the campaign -------------------------------------------------------------------------------------


def schedule(seed: int, runs: int) -> list[str]:
    """The fault kind of each run: every kind as evenly as the number of runs allows, in a seeded order."""
    rng = random.Random(f"schedule-{seed}")  # noqa: S311  (a replayable draw, not a secret)
    kinds: list[str] = []
    while len(kinds) < runs:
        cycle = list(FAULTS)
        rng.shuffle(cycle)
        kinds += cycle
    return kinds[:runs]


def load_config() -> LoadConfig:
    return LoadConfig(
        base_url=LB_URL,
        duration=LOAD_BOUND,
        max_requests=400_000,
        http_workers=3,
        slow_workers=1,
        post_workers=1,
        websocket_sessions=2,
        websocket_session_seconds=20,
        request_interval=0.05,
    )


def one_run(inventory: Path, seed: int, number: int, kind: str, baseline: Json) -> Json:
    rng = random.Random(f"run-{seed}-{number}")  # noqa: S311  (a replayable draw, not a secret)
    release = f"s{seed}r{number}t{int(time.time()) % 1_000_000}"
    label = f"{number}"
    log(f"run {number}: {kind}, release {release}")
    healed = heal_containers()
    # What else the machine was doing: its load, and the containers of other labs.
    busy = {"load_average_before": [round(value, 1) for value in os.getloadavg()], "other_containers": others()}
    load = LoadRun(load_config())
    load.start()
    load_began = time.monotonic()
    try:
        faulted = run_with_fault(inventory, release, kind, rng, baseline, label)
        log(
            f"  fault at {faulted['injected_at_seconds']} s ({faulted['injected_during']}) on {faulted['target']}; "
            f"the run exited {faulted['faulted_exit_code']} after {faulted['faulted_seconds']} s"
        )
        rejoined = heal_containers()
        rerun_code, rerun_seconds, rerun_output = playbook(
            inventory, "site.yml", "-e", f"django_app_release_id={release}", log_path=WORK / f"run-{label}-rerun.log"
        )
        log(f"  re-run exited {rerun_code} after {rerun_seconds} s")
        time.sleep(3)
    finally:
        report = load.stop()
    load_json = report.to_json()
    state, breaches = invariants(release, kind, load_json, [faulted["faulted_output"], rerun_output])
    if rerun_code != 0:
        breaches.insert(0, f"the re-run failed (exit {rerun_code}): {tail(rerun_output)}")
    took_over = "Took over the rollout lock" in " ".join(rerun_output.split())
    result = {
        "run": number,
        "fault": kind,
        "release": release,
        "healed_before": healed,
        "healed_after_fault": rejoined,
        **{key: value for key, value in faulted.items() if key != "faulted_output"},
        "faulted_tail": tail(faulted["faulted_output"]),
        "rerun_exit_code": rerun_code,
        "rerun_seconds": rerun_seconds,
        "rerun_took_over_lock": took_over,
        "load": {
            "seconds": round(time.monotonic() - load_began, 1),
            "sent": report.sent,
            "failed": report.failed,
            "by_kind": report.by_kind,
            "failures": report.failures[:10],
            "failure_window_seconds": failure_window(report.failure_seconds),
            "writes_acknowledged": len(report.written_ids),
            "websocket_sessions": report.websocket_sessions,
        },
        "state": state,
        "machine_busy": busy | {"load_average_after": [round(value, 1) for value in os.getloadavg()]},
        "breaches": breaches,
    }
    if breaches:
        log(f"  BREACH in run {number} (replay: bench/chaos.py --seed {seed} --runs RUNS --only {number}):")
        for breach in breaches:
            log(f"    {breach}")
    else:
        log(f"  invariants hold; {report.failed} of {report.sent} requests failed")
    return result


def others() -> int:
    """How many containers of other labs run on this machine."""
    names = docker("ps", "--format", "{{.Names}}", check=False).stdout.split()
    return sum(not name.startswith(PREFIX) for name in names)


def tail(output: str, lines: int = 12) -> str:
    return "\n".join(output.rstrip().splitlines()[-lines:])


def heal(inventory: Path, release: str, label: str) -> bool:
    """After a breach: bring the fleet to one release again so the next run starts whole."""
    heal_containers()
    code, _seconds, _output = playbook(
        inventory,
        "site.yml",
        "-e",
        f"django_app_release_id={release}",
        "-e",
        "rollout_lock_break=true",
        log_path=WORK / f"run-{label}-heal.log",
    )
    return code == 0


def summary(runs: list[Json]) -> Json:
    kinds: Json = {}
    config = load_config()
    for run in runs:
        run["breaches_judged"] = judged(run, config)
        entry = kinds.setdefault(
            run["fault"], {"runs": 0, "breaches": 0, "failed_requests": [], "windows": [], "rerun_seconds": []}
        )
        entry["runs"] += 1
        # A controller fault whose run ended before its moment found no controller to stop.
        entry["not_injected"] = entry.get("not_injected", 0) + (
            run["injected_at_seconds"] is None or "ProcessLookupError" in run["injection_error"]
        )
        entry["breaches"] += bool(run["breaches_judged"])
        entry.setdefault("websocket_sessions_cut", []).append(
            run["load"]["by_kind"].get("websocket", {}).get("failed", 0)
        )
        entry["failed_requests"].append(run["load"]["failed"])
        entry["windows"].append(run["load"]["failure_window_seconds"])
        entry["rerun_seconds"].append(run["rerun_seconds"])
    for entry in kinds.values():
        entry["failed_requests_max"] = max(entry["failed_requests"])
        entry["worst_window_seconds"] = max(entry["windows"])
        entry["rerun_seconds_max"] = max(entry["rerun_seconds"])
        entry["rerun_seconds_median"] = sorted(entry["rerun_seconds"])[len(entry["rerun_seconds"]) // 2]
    return {
        "runs": len(runs),
        "runs_with_breaches": sum(bool(run["breaches_judged"]) for run in runs),
        "runs_with_breaches_as_recorded": sum(bool(run["breaches"]) for run in runs),
        "by_fault": dict(sorted(kinds.items())),
    }


def fresh_lab(inventory: Path, measure: bool = True) -> Json | None:
    """The lab anew: containers, the database, a first deploy, then a rollout with no fault under load (the
    range the random moments are drawn from)."""
    log("the chaos lab, fresh")
    lab_script("down")
    lab_script("up")
    code, seconds, output = playbook(inventory, "lab/database.yml", log_path=WORK / "database.log")
    if code:
        raise RuntimeError(f"lab/database.yml failed:\n{tail(output, 30)}")
    code, seconds, output = playbook(
        inventory, "site.yml", "-e", "django_app_release_id=first", log_path=WORK / "first.log"
    )
    if code:
        raise RuntimeError(f"the first deploy failed:\n{tail(output, 30)}")
    log(f"first deploy: {seconds} s")
    if not measure:
        return None
    with LoadRun(load_config()) as load:
        code, seconds, output = playbook(
            inventory, "site.yml", "-e", "django_app_release_id=baseline", log_path=WORK / "baseline.log"
        )
        report = load.stop()
    if code:
        raise RuntimeError(f"the baseline rollout failed:\n{tail(output, 30)}")
    baseline = {"seconds": seconds, "tasks": output.count("\nTASK ["), "failed_requests": report.failed}
    log(f"baseline rollout: {seconds} s, {baseline['tasks']} tasks, {report.failed} failed requests")
    return baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", type=int, action="append", help="replay only this run (repeatable)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "chaos.json")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--stop-on-breach", action="store_true")
    parser.add_argument(
        "--baseline",
        metavar="SECONDS,TASKS",
        help="the range of the random moments, from an earlier campaign's baseline, instead of measuring it",
    )
    parser.add_argument(
        "--reuse-lab", action="store_true", help="use the running lab and its baseline (from an earlier --keep)"
    )
    parser.add_argument(
        "--summarize", action="store_true", help="only recompute the summary of --output's runs (no lab, no run)"
    )
    options = parser.parse_args(argv)
    if options.summarize:
        results = json.loads(options.output.read_text())
        results["summary"] = summary(results["runs"])
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"rewrote the summary of {options.output}: {results['summary']['runs_with_breaches']} runs with a breach")
        return 1 if results["summary"]["runs_with_breaches"] else 0
    WORK.mkdir(parents=True, exist_ok=True)
    kinds = schedule(options.seed, options.runs)
    numbers = options.only or list(range(1, options.runs + 1))
    command = f".venv/bin/python bench/chaos.py --runs {options.runs} --seed {options.seed}" + "".join(
        f" --only {n}" for n in options.only or []
    )
    results: Json = {
        "command": command,
        "seed": options.seed,
        "machine": lab.machine(),
        "lab": "own lab (lab/up.sh, .cache/chaos/hosts.sh): load balancer, app1 uvicorn, app2 daphne, app3 hypercorn, "
        "PostgreSQL on db; SSH as the deploy user; one app host a batch",
        "load": {
            k: getattr(load_config(), k)
            for k in (
                "http_workers",
                "slow_workers",
                "post_workers",
                "websocket_sessions",
                "websocket_session_seconds",
                "request_interval",
            )
        },
        "faults": list(FAULTS),
        "covered": sorted(COVERED),
        "runs": [],
    }
    began = time.perf_counter()
    breached = False
    try:
        inventory = write_inventory()
        cached = WORK / "baseline.json"
        given = None
        if options.baseline:
            seconds, tasks = options.baseline.split(",")
            given = {"seconds": float(seconds), "tasks": int(tasks), "given": True}
        if options.reuse_lab and cached.exists():
            log("the chaos lab as it is (--reuse-lab), with its baseline")
            baseline = json.loads(cached.read_text())
        else:
            baseline = fresh_lab(inventory, measure=given is None) or given
            cached.write_text(json.dumps(baseline) + "\n")
        results["baseline"] = baseline
        for number in numbers:
            run = one_run(inventory, options.seed, number, kinds[number - 1], baseline)
            results["runs"].append(run)
            results["summary"] = summary(results["runs"])
            options.output.write_text(json.dumps(results, indent=1) + "\n")
            if run["breaches"]:
                breached = True
                if options.stop_on_breach:
                    break
                if not heal(inventory, run["release"], str(number)):
                    log("  the fleet did not heal; the campaign stops here")
                    break
    finally:
        results["campaign_seconds"] = round(time.perf_counter() - began)
        if results["runs"]:
            results["summary"] = summary(results["runs"])
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {options.output}")
        if not options.keep:
            lab_script("down")
    if breached:
        for run in results["runs"]:
            if run["breaches"]:
                log(f"breach: seed {options.seed}, run {run['run']} ({run['fault']}): {run['breaches'][0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
