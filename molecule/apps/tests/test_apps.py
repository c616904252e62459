"""Two apps on one fleet: examples/demo and examples/bookshelf on the same load balancer and app hosts.

converge deploys the demo (-e @demo.yml); the first test deploys bookshelf
beside it (-e @bookshelf.yml). Each answers through the load balancer by its
Host, over HTTP and over HTTPS with its own certificate; a rollout of one, or
of both at once from two controller processes, fails no request of either and
leaves the other's processes alone; a host name of the demo claimed by
bookshelf is refused before any change; retiring bookshelf leaves the demo serving.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests" / "load"))

from loadgen import LoadConfig, LoadReport, LoadRun  # noqa: E402

from conftest import Answer, ansible_playbook, http_get, run_playbook, words  # noqa: E402

INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
SCENARIO = Path(__file__).resolve().parents[1]
TLS_DIR = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "tls"
VARS = {app: f"@{SCENARIO / 'vars' / f'{app}.yml'}" for app in ("demo", "bookshelf")}
NAMES = {"demo": "demo.apps.test", "bookshelf": "bookshelf.apps.test"}
SERVERS = {"demo": "uvicorn", "bookshelf": "gunicorn"}
# What each app's load GETs: JSON answers of its own.
PATHS = {"demo": ("/", "/async", "/whoami"), "bookshelf": ("/whoami", "/notes")}
LOAD_BALANCER = "http://127.0.0.1:18780"
LOAD_BALANCER_HTTPS_PORT = 18743
APP_PORTS = {"django-asgi-apps-app1": 18781, "django-asgi-apps-app2": 18782}
ALL_HOSTS = [*APP_PORTS, "django-asgi-apps-lb"]
# Bounds of one load run; a rollout ends well within them.
LOAD_SECONDS = 900
LOAD_REQUESTS = 100000


def host(name: str):
    return testinfra.get_host(f"docker://{name}")


def get(app: str, path: str = "/whoami", base: str = LOAD_BALANCER) -> Answer:
    return http_get(f"{base}{path}", headers={"Host": NAMES[app]}, timeout=15)


def whoami(app: str, base: str = LOAD_BALANCER) -> dict:
    answer = get(app, base=base)
    assert answer.status == 200, answer.body[:300]
    return answer.json()


def https_get(server_name: str, path: str, verify: bool) -> tuple[int, bytes, bytes]:
    """GET over TLS from the load balancer, server_name as SNI and Host: (status, body, server's certificate)."""
    if verify:
        context = ssl.create_default_context(cafile=str(TLS_DIR / f"{server_name.split('.')[0]}.crt"))
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", LOAD_BALANCER_HTTPS_PORT), timeout=15)
    tls = context.wrap_socket(raw, server_hostname=server_name)
    certificate = tls.getpeercert(binary_form=True) or b""
    connection = http.client.HTTPSConnection("127.0.0.1", LOAD_BALANCER_HTTPS_PORT, timeout=15, context=context)
    connection.sock = tls
    try:
        connection.request("GET", path, headers={"Host": server_name, "Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read(), certificate
    finally:
        connection.close()


def certificate_of(app: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert((TLS_DIR / f"{app}.crt").read_text())


def processes(app: str) -> dict[str, set[int]]:
    """The PIDs each app host runs as the app's user: its servers, their workers and its other processes."""
    listing = {name: host(name).check_output(f"ps -o pid= -u {app} || true") for name in APP_PORTS}
    return {name: {int(pid) for pid in pids.split()} for name, pids in listing.items()}


def records(app: str) -> dict[str, str]:
    """A digest of what each app host records of the app: serving colour, releases, processes."""
    digests = {}
    for name in APP_PORTS:
        text = host(name).check_output(f"cat /var/lib/{app}/active-colour /var/lib/{app}/*.json")
        digests[name] = hashlib.sha256(text.encode()).hexdigest()
    return digests


def releases(app: str) -> dict[str, str]:
    return {name: whoami(app, base=f"http://127.0.0.1:{port}")["release"] for name, port in APP_PORTS.items()}


def load(app: str) -> LoadRun:
    """Requests to one app through the load balancer, by its Host, bounded in time and count."""
    config = LoadConfig(
        base_url=LOAD_BALANCER,
        duration=LOAD_SECONDS,
        max_requests=LOAD_REQUESTS,
        http_workers=2,
        slow_workers=0,
        post_workers=1 if app == "demo" else 0,
        websocket_sessions=0,
        request_interval=0.01,
        host_header=NAMES[app],
        get_paths=PATHS[app],
    )
    return LoadRun(config)


def assert_quiet(app: str, report: LoadReport) -> None:
    print(f"load on {app}:\n{report.summary()}")
    assert report.sent > 50, f"too little load on {app} to tell"
    assert report.failed == 0, f"{app}: {report.failures[:10]}"


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP's counts of each host."""
    counts = {}
    for line in output[output.rindex("PLAY RECAP") :].splitlines()[1:]:
        match = re.match(r"^(\S+)\s*:\s*(.*)$", line.strip())
        if match:
            counts[match.group(1)] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return counts


def deploy(app: str, *arguments: str) -> tuple[int, str]:
    return run_playbook("site.yml", "-e", VARS[app], *arguments, inventory=INVENTORY)


def test_1_bookshelf_deploys_beside_the_demo_and_changes_nothing_on_a_second_run():
    demo_before = processes("demo")
    returncode, output = deploy("bookshelf")
    assert returncode == 0, output[-3000:]
    assert processes("demo") == demo_before, "deploying bookshelf restarted a process of the demo"
    returncode, output = deploy("bookshelf")
    assert returncode == 0
    assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)


@pytest.mark.parametrize("app", ["demo", "bookshelf"])
def test_each_app_answers_through_the_load_balancer_by_its_host_over_http(app):
    seen = {whoami(app)["server"] for _request in range(6)}
    assert seen == {SERVERS[app]}
    # And on each app host's own nginx, by the same Host.
    for port in APP_PORTS.values():
        assert whoami(app, base=f"http://127.0.0.1:{port}")["server"] == SERVERS[app]


@pytest.mark.parametrize("app", ["demo", "bookshelf"])
def test_each_app_answers_over_https_with_its_own_certificate(app):
    status, body, certificate = https_get(NAMES[app], "/whoami", verify=True)
    assert status == 200, body[:300]
    seen = json.loads(body)
    assert (seen["server"], seen["scheme"], seen["is_secure"]) == (SERVERS[app], "https", True)
    assert certificate == certificate_of(app)


@pytest.mark.parametrize("base", [LOAD_BALANCER, *(f"http://127.0.0.1:{port}" for port in APP_PORTS.values())])
def test_a_host_no_app_serves_gets_no_answer_over_http(base):
    for name in ("unknown.apps.test", "127.0.0.1", "localhost"):
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            http_get(f"{base}/whoami", headers={"Host": name})


def test_a_host_no_app_serves_gets_no_answer_over_https():
    # An unknown server name: the handshake, then no answer.
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        https_get("unknown.apps.test", "/whoami", verify=False)
    # A client that sends no server name (one that connects to an address)
    # gets the certificate of the first app of the host to serve HTTPS, the
    # demo, as a host with one app always gave; then no answer for a Host no app serves.
    context = ssl.create_default_context(cafile=str(TLS_DIR / "demo.crt"))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", LOAD_BALANCER_HTTPS_PORT), timeout=15) as raw:
        with context.wrap_socket(raw) as tls:
            assert tls.getpeercert(binary_form=True) == certificate_of("demo")
            tls.sendall(b"GET /whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert tls.recv(100) == b""


def test_the_demo_runs_in_its_own_slice_with_its_limits():
    app1 = host("django-asgi-apps-app1")
    assert app1.check_output("systemctl show --property MemoryMax --value demo.slice") == str(768 * 1024 * 1024)
    assert app1.check_output("systemctl show --property CPUWeight --value demo.slice") == "200"
    colour = app1.file("/var/lib/demo/active-colour").content_string.strip()
    assert app1.check_output(f"systemctl show --property Slice --value demo@{colour}.service") == "demo.slice"
    # bookshelf sets no limit: no slice of its own, and none of the demo's.
    colour = app1.file("/var/lib/bookshelf/active-colour").content_string.strip()
    slice_ = app1.check_output(f"systemctl show --property Slice --value bookshelf@{colour}.service")
    assert slice_ == "system-bookshelf.slice"
    assert not app1.file("/etc/systemd/system/bookshelf.slice").exists


def test_rolling_one_app_out_under_load_fails_no_request_of_either_and_leaves_the_other_alone():
    demo_processes, demo_records, demo_releases = processes("demo"), records("demo"), releases("demo")
    before = releases("bookshelf")
    with load("demo") as demo_load, load("bookshelf") as bookshelf_load:
        returncode, output = deploy("bookshelf", "-e", "django_app_release_id=b2")
        demo_report, bookshelf_report = demo_load.stop(), bookshelf_load.stop()
    assert returncode == 0, output[-3000:]
    assert_quiet("demo", demo_report)
    assert_quiet("bookshelf", bookshelf_report)
    assert set(releases("bookshelf").values()) == {"b2"} and before != releases("bookshelf")
    assert processes("demo") == demo_processes, "the demo's server or worker processes changed"
    assert records("demo") == demo_records
    assert releases("demo") == demo_releases


def test_both_apps_roll_out_at_once_from_two_controller_processes():
    with load("demo") as demo_load, load("bookshelf") as bookshelf_load:
        runs = {
            app: ansible_playbook(
                "site.yml",
                "-e",
                VARS[app],
                "-e",
                f"django_app_release_id={release}",
                inventory=INVENTORY,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for app, release in (("demo", "d3"), ("bookshelf", "b3"))
        }
        outputs = {app: run.communicate(timeout=1200)[0] for app, run in runs.items()}
        demo_report, bookshelf_report = demo_load.stop(), bookshelf_load.stop()
    for app, run in runs.items():
        print(f"{app}:\n{outputs[app][-2500:]}")
        assert run.returncode == 0, f"the rollout of {app} failed"
    assert_quiet("demo", demo_report)
    assert_quiet("bookshelf", bookshelf_report)
    assert set(releases("demo").values()) == {"d3"}
    assert set(releases("bookshelf").values()) == {"b3"}


@pytest.mark.parametrize(("app", "release"), [("demo", "d3"), ("bookshelf", "b3")])
def test_a_check_run_of_either_app_finds_nothing_to_change(app, release):
    returncode, output = deploy(app, "--check", "--diff", "-e", f"django_app_release_id={release}")
    assert returncode == 0, output[-3000:]
    assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)


def test_two_apps_claiming_one_host_name_are_refused_before_any_change():
    sites = {name: host(name).check_output("sha256sum /etc/nginx/sites-available/*") for name in ALL_HOSTS}
    before = releases("bookshelf")
    claim = json.dumps({"django_app_allowed_hosts": [NAMES["bookshelf"], NAMES["demo"]]})
    returncode, output = deploy("bookshelf", "-e", claim, "-e", "django_app_release_id=b4")
    assert returncode != 0
    said = words(output)
    assert "server_names must list host names no other app on" in said, said[-3000:]
    assert f"bookshelf claims {NAMES['demo']}, which is served by demo" in said
    assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)
    assert {name: host(name).check_output("sha256sum /etc/nginx/sites-available/*") for name in ALL_HOSTS} == sites
    assert releases("bookshelf") == before
    assert whoami("demo")["server"] == SERVERS["demo"]
    for name in ALL_HOSTS:
        assert not host(name).file("/run/lock/django-asgi-rollout-bookshelf.json").exists


def test_retiring_needs_the_app_named_twice():
    returncode, output = run_playbook(
        "playbooks/retire.yml", "-e", VARS["bookshelf"], "-e", "retire_app=demo", inventory=INVENTORY
    )
    assert returncode != 0
    assert "retire_app must repeat django_app_name, to confirm which app goes (-e retire_app=<app>)" in words(output)
    assert all(counts["changed"] == 0 for counts in recap(output).values()), recap(output)
    assert whoami("bookshelf")["server"] == SERVERS["bookshelf"]


def test_z_retiring_bookshelf_leaves_the_demo_serving_and_nothing_of_bookshelf_behind():
    demo_processes = processes("demo")
    with load("demo") as demo_load:
        returncode, output = run_playbook(
            "playbooks/retire.yml", "-e", VARS["bookshelf"], "-e", "retire_app=bookshelf", inventory=INVENTORY
        )
        demo_report = demo_load.stop()
    assert returncode == 0, output[-3000:]
    assert_quiet("demo", demo_report)
    assert processes("demo") == demo_processes
    for name in APP_PORTS:
        app = host(name)
        assert app.check_output("systemctl list-units --all --plain --no-legend 'bookshelf*'") == ""
        assert app.check_output("ls /etc/systemd/system /etc/systemd/system/*.wants | grep bookshelf || true") == ""
        assert app.check_output("ls /etc/nginx/sites-enabled /etc/nginx/sites-available | grep bookshelf || true") == ""
        assert not app.user("bookshelf").exists
        assert not app.file("/srv/bookshelf/releases").exists and not app.file("/etc/bookshelf").exists
        # Its data stays unless asked.
        assert app.file("/srv/bookshelf/shared").is_directory and app.file("/data/media").is_directory
    lb = host("django-asgi-apps-lb")
    listing = "ls /etc/nginx/sites-enabled /etc/nginx/sites-available /etc/nginx /etc/nginx/tls"
    assert lb.check_output(f"{listing} | grep bookshelf || true") == ""
    # Its host name is now one no app serves; the demo's still answers, over HTTP and HTTPS.
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        get("bookshelf")
    assert whoami("demo")["server"] == SERVERS["demo"]
    assert https_get(NAMES["demo"], "/whoami", verify=True)[0] == 200
