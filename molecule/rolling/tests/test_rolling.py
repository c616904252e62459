"""Rolling releases out across the fleet while clients keep using it.

The load goes from the controller to the load balancer's port published on
127.0.0.1 (tests/load/loadgen.py: fast GETs, 2 s requests, database writes and
WebSocket sessions that stay open across the switches) while ansible-playbook
rolls a release out; every failure is recorded and none is allowed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import testinfra
from websockets.sync.client import connect

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests" / "load"))

from loadgen import LoadConfig, LoadReport, LoadRun  # noqa: E402

from conftest import active_colour, run_playbook, running_units, serving_units, wait_for  # noqa: E402

INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
APP_HOSTS = ["django-asgi-rolling-app1", "django-asgi-rolling-app2", "django-asgi-rolling-app3"]
LOAD_BALANCER = "http://127.0.0.1:18180"
LOAD_BALANCER_HTTPS = "https://127.0.0.1:18543"
SINGLE_HOST = "http://127.0.0.1:18181"
# Bounds of one load run; a rollout ends well within them.
LOAD_SECONDS = 600
LOAD_REQUESTS = 200000


def api(path: str, method: str = "GET", base_url: str = LOAD_BALANCER) -> dict:
    request = urllib.request.Request(f"{base_url}{path}", method=method)  # noqa: S310  (loopback only)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


class TaskQueuer:
    """Queues a Celery task through the load balancer every interval until stopped (bounded)."""

    def __init__(self, interval: float = 0.25, limit: int = 4000):
        self.interval, self.limit = interval, limit
        self.ids: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.ids) + len(self.failures) < self.limit:
            try:
                self.ids.append(api("/tasks", method="POST")["id"])
            except (OSError, urllib.error.URLError, ValueError, KeyError) as error:
                self.failures.append(repr(error))
            self._stop.wait(self.interval)

    def __enter__(self) -> TaskQueuer:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def tasks_done(ids: list[int], timeout: float = 180) -> list[dict]:
    """Each task's answer once every one is done (the workers drain the queue), or fail naming the rest."""
    pending = set(ids)
    done: dict[int, dict] = {}

    def all_done() -> bool:
        for job in sorted(pending):
            answer = api(f"/tasks/{job}")
            if answer["done"]:
                done[job] = answer
                pending.discard(job)
        return not pending

    wait_for(all_done, timeout=timeout, interval=1)
    return [done[job] for job in ids]


def beat_runs(ticks: list[list]) -> list[str]:
    """The beats (origin: process@host) in the order their ticks were sent, one entry per run of ticks."""
    runs: list[str] = []
    for origin, _sent_at in ticks:
        if not runs or runs[-1] != origin:
            runs.append(origin)
    return runs


def assert_one_beat_at_a_time() -> list[str]:
    runs = beat_runs(api("/ticks")["ticks"])
    # A beat that came back after another had started ran beside it.
    assert len(runs) == len(set(runs)), runs
    return runs


def extra_units(host, state: str = "active") -> list[str]:
    listing = host.check_output(f"systemctl list-units --state={state} --plain --no-legend 'demo-*-*'")
    return sorted(line.split()[0] for line in listing.splitlines() if not line.startswith("demo-manage"))


def ansible_playbook(playbook: str, *arguments: str, inventory: Path = INVENTORY) -> subprocess.CompletedProcess:
    returncode, output = run_playbook(playbook, *arguments, inventory=inventory)
    return subprocess.CompletedProcess(playbook, returncode, output, "")


def roll_out_under_load(base_url: str, playbook: str, *arguments: str, inventory: Path = INVENTORY):
    config = LoadConfig(
        base_url=base_url,
        duration=LOAD_SECONDS,
        max_requests=LOAD_REQUESTS,
        # Two workers: tens of thousands of requests per rollout, with CPU left
        # on CI's 2 cores for the rollout itself.
        http_workers=2,
        request_interval=0.01,
        # Each session spans a switch, then ends cleanly well within the drain timeouts.
        websocket_session_seconds=15,
    )
    with LoadRun(config) as load:
        result = ansible_playbook(playbook, *arguments, inventory=inventory)
        report: LoadReport = load.stop()
    print(f"load during {playbook} {' '.join(arguments)}:\n{report.summary()}")
    print(json.dumps(report.to_json(), indent=1)[:4000])
    return result, report


def releases_served(base_url: str = LOAD_BALANCER, requests: int = 12) -> set[str]:
    seen = set()
    for _request in range(requests):
        with urllib.request.urlopen(f"{base_url}/whoami", timeout=5) as response:  # noqa: S310  (loopback only)
            seen.add(json.loads(response.read())["release"])
    return seen


def host_release(host) -> str:
    return json.loads(host.check_output("curl -sS --max-time 5 http://127.0.0.1/whoami"))["release"]


def batches(output: str) -> list[list[str]]:
    """The app hosts each "Switch the app hosts, batch by batch" play ran on, in the order the plays ran."""
    found = []
    for section in output.split("PLAY [Switch the app hosts, batch by batch]")[1:]:
        section = section.split("\nPLAY [", 1)[0]
        found.append(sorted(set(re.findall(r"^\w+: \[(django-asgi-rolling-app\d)", section, re.MULTILINE))))
    return found


def assert_no_failure(report: LoadReport) -> None:
    assert report.sent > 100, report.summary()
    assert report.failed == 0, report.failures
    assert report.websocket_sessions > 0
    assert report.websocket_failed == 0, report.failures


@pytest.fixture(scope="module")
def app_hosts():
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}") for name in APP_HOSTS}


@pytest.fixture(scope="module")
def broken_source(tmp_path_factory) -> Path:
    """The demo with an ASGI module that cannot import: migrations work, the server never starts."""
    source = tmp_path_factory.mktemp("broken") / "demo"
    shutil.copytree(PROJECT / "examples" / "demo", source, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    asgi = source / "demo" / "asgi.py"
    asgi.write_text(asgi.read_text() + '\nraise RuntimeError("release v3 is broken on purpose")\n')
    return source


def test_0_workers_beat_and_timers_run_the_serving_release_and_groups_span_the_hosts(app_hosts):
    for name, host in app_hosts.items():
        colour = active_colour(host)
        expected = [f"demo-migrations-{colour}.timer", f"demo-worker-{colour}@1.service"]
        if name == APP_HOSTS[0]:
            expected.insert(0, f"demo-beat-{colour}@1.service")
        assert extra_units(host) == expected, name
        assert host.service(f"demo-worker-{colour}@1.service").is_enabled
        # The timer fired (every 20 s) and its command's output is in the journal.
        wait_for(lambda h=host: "[X] 0001_initial" in h.check_output("journalctl --no-pager -t demo-migrations"), 45)
    # A view queues a task, a worker runs it on the serving release.
    (answer,) = tasks_done([api("/tasks", method="POST")["id"]], timeout=60)
    assert answer["release"] == "v1"
    wait_for(lambda: len(api("/ticks")["ticks"]) >= 3, timeout=30)
    assert len(assert_one_beat_at_a_time()) == 1
    # A group member on one host gets what a member on another host sends:
    # the load balancer spreads the connections, the greeting names the server.
    members: dict[str, object] = {}
    try:
        for _attempt in range(12):
            ws = connect("ws://127.0.0.1:18180/ws/group/lab", open_timeout=5)
            server = json.loads(ws.recv(timeout=5))["server"]
            if server in members:
                ws.close()
            else:
                members[server] = ws
            if len(members) == 2:
                break
        assert len(members) == 2, members
        (sender_server, sender), (receiver_server, receiver) = list(members.items())
        sender.send("across hosts")
        assert json.loads(receiver.recv(timeout=10)) == {"message": "across hosts", "from": sender_server}
        assert json.loads(sender.recv(timeout=10))["from"] == sender_server
        assert receiver_server != sender_server
    finally:
        for ws in members.values():
            ws.close()


def run_report(path: Path) -> dict:
    """The run's JSON report, checked against its schema."""
    report = json.loads(path.read_text())
    jsonschema.validate(report, json.loads((PROJECT / "playbooks" / "report.schema.json").read_text()))
    return report


def test_1_rolling_v1_to_v2_under_load_fails_no_request(app_hosts, tmp_path):
    assert {host_release(host) for host in app_hosts.values()} == {"v1"}
    report_path = tmp_path / "report.json"
    with TaskQueuer() as queued:
        result, report = roll_out_under_load(
            LOAD_BALANCER, "site.yml", "-e", "django_app_release_id=v2", "-e", f"rollout_report={report_path}"
        )
    assert result.returncode == 0
    # The report for pipelines: a line per batch as it ended, each host switched to v2.
    run = run_report(report_path)
    assert run["outcome"] == "succeeded"
    assert [batch["hosts"] for batch in run["batches"]] == [[name] for name in APP_HOSTS]
    assert [batch["hosts_done"] for batch in run["batches"]] == [1, 2, 3]
    for name in APP_HOSTS:
        assert run["hosts"][name]["outcome"] == "switched" and run["hosts"][name]["release"] == "v2", run["hosts"]
        assert 0 < run["hosts"][name]["seconds"] < run["seconds"]
    assert "Batch 2 done (django-asgi-rolling-app2): 2 of 3 app hosts done" in " ".join(result.stdout.split())
    assert_no_failure(report)
    # Every task queued during the rollout was run, by the old workers or the new.
    assert not queued.failures, queued.failures[:5]
    assert len(queued.ids) > 20
    done = tasks_done(queued.ids)
    assert {answer["release"] for answer in done} <= {"v1", "v2"}
    assert done[-1]["release"] == "v2"
    # beat moved to v2 with app1's switch, never running twice at once.
    beats = assert_one_beat_at_a_time()
    assert len(beats) >= 2, beats
    for name, host in app_hosts.items():
        colour = active_colour(host)
        assert all(f"-{colour}" in unit for unit in extra_units(host, "active,activating")), name
        # The previous colour's unit files went with it.
        assert not host.run(f"ls /etc/systemd/system/demo-*-{'green' if colour == 'blue' else 'blue'}*").stdout
    # One host per batch, in inventory order, whichever host finished its build first.
    assert batches(result.stdout) == [[name] for name in APP_HOSTS]
    # v2 changes only code: it runs on the venv v1 built.
    for host in app_hosts.values():
        venvs = host.check_output("readlink -e /srv/demo/releases/v1/venv-* /srv/demo/releases/v2/venv-*").split()
        assert len(venvs) == 2 and len(set(venvs)) == 1 and venvs[0].startswith("/srv/demo/venvs/"), venvs
    assert {host_release(host) for host in app_hosts.values()} == {"v2"}
    # The daphne colour switched under load was several processes.
    daphne = app_hosts["django-asgi-rolling-app2"]
    assert len(serving_units(daphne)) > 1, serving_units(daphne)
    assert running_units(daphne) == sorted(serving_units(daphne))
    assert releases_served() == {"v2"}


def test_2_a_broken_release_stops_at_the_first_batch_and_never_serves(app_hosts, broken_source, tmp_path):
    result, report = roll_out_under_load(
        LOAD_BALANCER,
        "site.yml",
        "-e",
        f"rollout_report={tmp_path / 'report.json'}",
        "-e",
        "django_app_release_id=v3",
        "-e",
        f"django_app_source={broken_source}",
        "-e",
        "asgi_server_health_retries=15",
    )
    assert result.returncode != 0
    # Ansible folds long lines and prints the final error on stderr: compare
    # the words of both streams, not their layout.
    output = " ".join((result.stdout + result.stderr).split())
    assert "did not pass its health probe" in output
    assert "not switched: the rollout stopped before this host" in output
    run = run_report(tmp_path / "report.json")
    assert run["outcome"] == "failed" and "did not pass its health probe" in run["failure"]
    assert [run["hosts"][name]["outcome"] for name in APP_HOSTS] == ["failed", "not switched", "not switched"]
    assert {run["hosts"][name]["release"] for name in APP_HOSTS} == {"v2"}
    (batch,) = run["batches"]
    assert (batch["hosts"], batch["hosts_done"], batch["hosts_total"]) == ([APP_HOSTS[0]], 0, 3)
    assert 0 < batch["elapsed_seconds"] <= run["seconds"]
    assert_no_failure(report)
    assert "v3" not in report.releases_seen
    assert {host_release(host) for host in app_hosts.values()} == {"v2"}
    for host in app_hosts.values():
        # Only the serving colour's processes: one, or one per CPU for a server without safe workers of its own.
        assert running_units(host) == sorted(serving_units(host))
        assert all(f"-{active_colour(host)}" in unit for unit in extra_units(host, "active,activating"))


def test_2b_a_worker_that_cannot_start_stops_the_rollout_with_the_old_workers_running(app_hosts):
    broken = {
        "asgi_server_extra_processes": [
            {"name": "worker", "command": ["celery", "-A", "no_such_project", "worker"]},
            {"name": "beat", "command": ["celery", "-A", "demo", "beat", "-s", "/srv/demo/shared/b"], "hosts": "one"},
        ]
    }
    result = ansible_playbook("site.yml", "-e", "django_app_release_id=v4", "-e", json.dumps(broken))
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "a process did not keep running" in output and "demo-worker-" in output
    for name, host in app_hosts.items():
        assert host_release(host) == "v2"
        colour = active_colour(host)
        expected = [f"demo-migrations-{colour}.timer", f"demo-worker-{colour}@1.service"]
        if name == APP_HOSTS[0]:
            expected.insert(0, f"demo-beat-{colour}@1.service")
        assert extra_units(host) == expected, name
    # The workers of v2 still take tasks, and beat still ticks from one host.
    (answer,) = tasks_done([api("/tasks", method="POST")["id"]], timeout=60)
    assert answer["release"] == "v2"
    assert_one_beat_at_a_time()


def test_3_rollback_to_v1_under_load_fails_no_request(app_hosts, tmp_path):
    report_path = tmp_path / "report.json"
    # Batches as a share of the app hosts: 67% of 3 is 2 hosts, then the last one.
    result, report = roll_out_under_load(
        LOAD_BALANCER, "playbooks/rollback.yml", "-e", "rollout_serial=67%", "-e", f"rollout_report={report_path}"
    )
    assert result.returncode == 0
    assert_no_failure(report)
    run = run_report(report_path)
    assert [batch["hosts"] for batch in run["batches"]] == [APP_HOSTS[:2], APP_HOSTS[2:]]
    assert [batch["hosts_done"] for batch in run["batches"]] == [2, 3]
    assert {host_release(host) for host in app_hosts.values()} == {"v1"}
    assert releases_served() == {"v1"}
    # The operator's command follows the colour that serves again.
    script = "import os; print(os.environ['ROLLOUT_RELEASE_ID'])"
    for host in app_hosts.values():
        assert host.check_output(f'demo-manage shell -c "{script}"').splitlines()[-1] == "v1"
    # The workers went back with the web server.
    (answer,) = tasks_done([api("/tasks", method="POST")["id"]], timeout=60)
    assert answer["release"] == "v1"
    assert_one_beat_at_a_time()


def test_the_health_path_answers_the_load_balancer_and_the_host_but_no_client_of_theirs(app_hosts):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{LOAD_BALANCER}/-/health", timeout=5)  # noqa: S310  (loopback only)
    assert refused.value.code == 404
    load_balancer = testinfra.get_host(f"ansible://django-asgi-rolling-lb?ansible_inventory={INVENTORY}")
    for number, (name, host) in enumerate(app_hosts.items(), start=11):
        assert json.loads(host.check_output("curl -sS --max-time 5 http://127.0.0.1/-/health"))["healthy"] is True
        address = f"172.30.58.{number}"  # its load_balancer_backend_address
        answer = load_balancer.check_output(
            f"curl -sS --max-time 5 -o /dev/null -w '%{{http_code}}' -H 'Host: localhost' http://{address}/-/health"
        )
        assert answer == "200", name


def test_https_at_the_load_balancer_makes_django_see_a_secure_request_and_carries_websockets():
    certificate = PROJECT / ".cache" / "tls" / "lab.crt"
    context = ssl.create_default_context(cafile=certificate)
    with urllib.request.urlopen(f"{LOAD_BALANCER_HTTPS}/whoami", context=context, timeout=5) as response:  # noqa: S310
        seen = json.loads(response.read())
        assert response.headers["Strict-Transport-Security"] == "max-age=300"
    assert seen["scheme"] == "https"
    assert seen["is_secure"] is True
    assert seen["client"] == "172.30.58.1"  # the published port's gateway, as the load balancer saw it
    with connect(f"wss://127.0.0.1:{LOAD_BALANCER_HTTPS.rsplit(':', 1)[1]}/ws/echo", ssl=context, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["hello"] is True
        ws.send("over wss")
        assert ws.recv(timeout=5) == "over wss"
    # Plain HTTP still serves (no redirect asked for), and says so.
    with urllib.request.urlopen(f"{LOAD_BALANCER}/whoami", timeout=5) as response:  # noqa: S310  (loopback only)
        assert json.loads(response.read())["is_secure"] is False


def test_4_single_host_without_load_balancer_fails_no_request(app_hosts, tmp_path):
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(INVENTORY), "--host", APP_HOSTS[0]],
        capture_output=True,
        text=True,
        check=True,
    )
    host_vars = json.loads(listing.stdout)
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"app_servers": {"hosts": {APP_HOSTS[0]: host_vars}}}))
    result, report = roll_out_under_load(SINGLE_HOST, "site.yml", "-e", "django_app_release_id=v2", inventory=single)
    assert result.returncode == 0
    assert_no_failure(report)
    assert host_release(app_hosts[APP_HOSTS[0]]) == "v2"
