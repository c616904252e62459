"""Bad input, faults and host security, on a load balancer and two app hosts.

Every rollout here is site.yml run from the controller against molecule's
inventory; requests go to the ports the scenario publishes on 127.0.0.1. The
tests run in file order: the later ones build on the releases the earlier
ones left (f1 from converge, then f2, then f3).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
import testinfra

from conftest import (
    APP,
    PROJECT,
    active_colour,
    ansible_playbook,
    assert_restarted_after_sigkill,
    assert_socket_only_for_nginx,
    http_get,
    run_playbook,
    unit_exposure,
    unit_property,
    wait_for,
    words,
)

LOAD_BALANCER = "http://127.0.0.1:18280"
APP_URLS = {"django-asgi-faults-app1": "http://127.0.0.1:18281", "django-asgi-faults-app2": "http://127.0.0.1:18282"}
ALL_HOSTS = ["django-asgi-faults-lb", *APP_URLS]
NETWORK = ip_network("172.30.59.0/24")
LOAD_BALANCER_ADDRESS = ip_address("172.30.59.10")
SECRET_KEY = "molecule-faults-secret-key-5d0c9e"  # noqa: S105  (the scenario's own test value)
ROTATED_SECRET_KEY = "molecule-faults-rotated-key-8a41f7"  # noqa: S105
DATABASE_PATH = f"/srv/{APP}/shared/db.sqlite3"
LOCK = f"/run/lock/django-asgi-rollout-{APP}.json"
# Where test 10 leaves the fleet: release f3 with a rotated secret key.
CONVERGED_STATE = [
    "-e",
    "django_app_release_id=f3",
    "-e",
    json.dumps({"django_app_env": {"DEMO_SECRET_KEY": ROTATED_SECRET_KEY, "DEMO_DATABASE_PATH": DATABASE_PATH}}),
]
# What the rollout writes on a host; a run refused in preflight changes none of it.
MANAGED_PATHS = f"/etc/nginx /etc/systemd/system /etc/{APP} /srv/{APP} /var/lib/{APP} /run/{APP} /run/lock"

# Output of the verbose run of test 7, which test 8 searches for secrets.
VERBOSE_RUN: dict[str, str] = {}


@pytest.fixture(scope="module")
def hosts():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}") for name in ALL_HOSTS}


def release_of(url: str) -> str:
    answer = http_get(f"{url}/whoami")
    assert answer.status == 200, answer
    return answer.json()["release"]


def releases_everywhere() -> dict[str, str]:
    return {name: release_of(url) for name, url in APP_URLS.items()}


def serving_unit_of(host) -> str:
    return f"{APP}@{active_colour(host)}.service"


def fingerprint(host) -> str:
    """Path, size, mode and modification time of everything the rollout manages, plus the running units."""
    listing = host.check_output(
        f"find {MANAGED_PATHS} -xdev -path /srv/{APP}/shared -prune -o -printf '%p %s %m %T@\\n' 2>/dev/null"
        f" | sort | sha1sum; systemctl list-units --plain --no-legend --state=running '{APP}@*' nginx.service"
    )
    return listing


def docker(*arguments: str) -> None:
    subprocess.run(["docker", *arguments], check=True, capture_output=True, timeout=120)


# --- The hosts are locked down ---------------------------------------------------


@pytest.mark.parametrize("name", list(APP_URLS))
def test_1_each_server_unit_is_sandboxed(hosts, name):
    host = hosts[name]
    unit = serving_unit_of(host)
    exposure = unit_exposure(host, unit)
    print(f"{name} {unit}: systemd-analyze security exposure {exposure}")
    assert exposure <= 2.5
    assert unit_property(host, unit, "ProtectSystem") == "strict"
    assert unit_property(host, unit, "CapabilityBoundingSet") == ""
    # The app user has no shell, cannot write its code, and reads but cannot change its secrets.
    assert host.user(APP).shell in ("/usr/sbin/nologin", "/sbin/nologin")
    release_dir = host.check_output(f"systemctl show --property WorkingDirectory --value {unit}").rsplit("/src", 1)[0]
    for path in (release_dir, f"{release_dir}/src", host.check_output(f"ls -d {release_dir}/venv-*")):
        assert host.run(f"runuser -u {APP} -- test -w {path}").rc != 0, f"{APP} may write {path}"
    env_file = host.file(f"/etc/{APP}/env")
    assert (env_file.mode, env_file.user, env_file.group) == (0o640, "root", APP)
    assert host.run(f"runuser -u {APP} -- test -r /etc/{APP}/env").rc == 0
    assert_socket_only_for_nginx(host, unit)


def test_2_nginx_limits_headers_and_unknown_hosts():
    answer = http_get(f"{APP_URLS['django-asgi-faults-app1']}/whoami")
    assert answer.headers["server"] == "nginx"  # server_tokens off: no version
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "same-origin"
    # A Host nobody serves gets no answer at all, on the app host and on the load balancer.
    for url in (APP_URLS["django-asgi-faults-app1"], LOAD_BALANCER):
        with pytest.raises(OSError):
            http_get(f"{url}/whoami", headers={"Host": "attacker.example"})
    # A body over client_max_body_size (10m) is refused before it reaches Django.
    request = urllib.request.Request(  # noqa: S310  (loopback only)
        f"{APP_URLS['django-asgi-faults-app1']}/db", data=b"x" * (11 * 1024 * 1024), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310
    assert refused.value.code == 413


def test_3_forwarded_headers_from_clients_never_reach_django_as_truth_through_the_load_balancer():
    spoofed = {
        "X-Forwarded-For": "6.6.6.6, 9.9.9.9",
        "X-Real-IP": "7.7.7.7",
        "Forwarded": "for=8.8.8.8;proto=https",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
    }
    for _attempt in range(4):  # both app hosts, whichever the load balancer picks
        seen = http_get(f"{LOAD_BALANCER}/whoami", headers=spoofed).json()
        client = ip_address(seen["client"])
        # Django sees the address the load balancer saw (the Docker gateway of
        # the lab network), not a spoofed one and not the load balancer itself.
        assert client in NETWORK and client != LOAD_BALANCER_ADDRESS, seen
        assert seen["scheme"] == "http" and not seen["is_secure"], seen
        assert seen["host"] == "127.0.0.1", seen


# --- Bad input: refused in preflight, before any host changes ----------------------

BAD_INPUTS = [
    ("django_app_name", "Demo App"),
    ("django_app_name", "root"),
    ("django_app_asgi_module", "demo/asgi.py"),
    ("django_app_settings_module", "demo-settings"),
    ("django_app_release_id", "../../etc"),
    ("django_app_allowed_hosts", ["app.example.com; evil"]),
    ("django_app_env", {"BAD-NAME": "x"}),
    ("django_app_keep_releases", 1),
    ("django_app_build_nice", 25),
    ("django_app_source", "/nonexistent/source"),
    ("asgi_server_kind", "waitress"),
    ("asgi_server_workers", 0),
    # 2 is fine for uvicorn (app1), more than daphne (app2) runs.
    ("asgi_server_workers", 2),
    ("asgi_server_processes", 0),
    ("asgi_server_graceful_timeout", 0),
    ("asgi_server_socket_dir", "/tmp/sockets"),  # noqa: S108  (a bad input, never created)
    ("asgi_server_extra_processes", [{"name": "celery-worker", "command": ["celery", "worker"]}]),
    ("asgi_server_extra_processes", [{"name": "worker", "command": "celery -A demo worker"}]),
    ("asgi_server_timers", [{"name": "sessions", "command": ["clearsessions"], "schedule": "every tuesday"}]),
    ("asgi_server_one_host", "no-such-host"),
    ("nginx_proxy_trusted_proxies", ["10.0.0.300/8"]),
    ("nginx_proxy_trusted_proxies", ["lb.example"]),
    ("nginx_proxy_server_names", ["good.example", "bad name"]),
    ("nginx_proxy_http_port", 70000),
    ("nginx_proxy_https_port", 80),
    ("nginx_proxy_tls_certificate", "/nonexistent/lab.crt"),
    ("nginx_proxy_client_max_body_size", "10 megabytes"),
    ("nginx_proxy_extra_directives", ["gzip on"]),
    ("load_balancer_server_names", ["*"]),
    ("load_balancer_backend_port", 0),
    ("load_balancer_redirect_to_https", True),  # without a certificate
    ("nginx_proxy_health_sources", ["everyone"]),
    # A name nginx on the load balancer could not resolve at its nginx -t.
    ("load_balancer_backend_address", "app1.nowhere.invalid"),
    ("django_app_project_dir", "../elsewhere"),
    ("django_app_project_dir", "no-such-dir"),
    ("django_app_requirements_file", "requirements/missing.txt"),
    ("django_app_writable_dirs", ["/etc/demo-media"]),
    ("django_app_project_files", [{"path": "../outside.py", "template": "/nonexistent.j2"}]),
    ("rollout_serial", "0"),
    ("rollout_serial", "half"),
    ("rollout_rollback_on_failure", "maybe"),
    ("rollout_report", "/nonexistent/reports/rollout.json"),
    ("rollout_migrations", "both"),
    ("django_app_migrate_mode", "later"),
    ("django_app_migrations_safe", ["hello 0003"]),
    ("django_app_migrate_lock_timeout", 0),
    # What the roles will use, not what the spec reads into it: a string is not a mapping of settings.
    ("django_app_settings_overrides", "DEBUG=True"),
    ("django_app_runtime_packages", ["lib pq5"]),
    # A well-formed name the hosts' archive does not have, asked of one host of each Debian release.
    ("django_app_runtime_packages", ["libpq-no-such-package5"]),
    # A repository the controller cannot fetch (django_app_source is emptied for it below).
    ("django_app_source_repo", "file:///nonexistent/repositories/demo.git"),
]


@pytest.fixture(scope="module")
def bad_input_runs(hosts, tmp_path_factory):
    """Every bad input run once, four at a time, with the hosts' fingerprints before and after."""
    key = tmp_path_factory.mktemp("tls") / "lab.key"
    key.write_text("not checked before the certificate\n")
    before = {name: fingerprint(host) for name, host in hosts.items()}

    def run(case):
        variable, value = case
        extra = {variable: value}
        if variable == "nginx_proxy_tls_certificate":
            extra["nginx_proxy_tls_certificate_key"] = str(key)
        if variable == "django_app_source_repo":
            extra["django_app_source"] = ""
        return run_playbook("site.yml", "-e", json.dumps(extra), echo=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, BAD_INPUTS))
    after = {name: fingerprint(host) for name, host in hosts.items()}
    return results, before, after


def failure_messages(output: str) -> str:
    """What the failed tasks said: each fatal or failed line and the indented lines under it."""
    kept, inside = [], False
    for line in output.splitlines():
        if line.startswith(("fatal:", "failed:")):
            inside = True
        elif not line[:1].isspace():
            inside = False
        if inside:
            kept.append(line)
    return "\n".join(kept)


@pytest.mark.parametrize("case", range(len(BAD_INPUTS)), ids=[f"{v}={json.dumps(x)}" for v, x in BAD_INPUTS])
def test_4_bad_input_fails_in_preflight_naming_the_variable(bad_input_runs, case):
    variable, value = BAD_INPUTS[case]
    results = bad_input_runs[0]
    returncode, output = results[case]
    failed_tasks = [line for line in output.splitlines() if line.startswith(("fatal:", "failed:"))]
    print(f"{variable}={value!r}: rc {returncode}\n" + "\n".join(failed_tasks)[-1500:])
    assert returncode != 0
    # The failure's own message names the variable (a passing check's loop label names it too).
    assert variable in words(failure_messages(output)), output[-3000:]
    # Nothing after the checks ran: not even the lock was taken.
    assert "PLAY [Check every input before any host changes]" in output
    assert "PLAY [Take the rollout lock on every host]" not in output


def test_5_no_host_changed_during_the_bad_input_runs(bad_input_runs):
    before, after = bad_input_runs[1:]
    assert after == before


# --- Faults ---------------------------------------------------------------------------


def test_6_kill_and_host_restart_come_back_serving(hosts):
    app2 = hosts["django-asgi-faults-app2"]
    assert_restarted_after_sigkill(app2, APP_URLS["django-asgi-faults-app2"], serving_unit_of(app2))

    nginx_pid = app2.check_output("systemctl show --property MainPID --value nginx")
    app2.run(f"kill -9 {nginx_pid}")
    wait_for(lambda: http_get(f"{APP_URLS['django-asgi-faults-app2']}/whoami").status == 200, timeout=60)
    assert app2.check_output("systemctl show --property MainPID --value nginx") != nginx_pid

    app1 = hosts["django-asgi-faults-app1"]
    colour = active_colour(app1)
    docker("restart", "django-asgi-faults-app1")
    answer = wait_for(lambda: (a := http_get(f"{APP_URLS['django-asgi-faults-app1']}/whoami")).status == 200 and a, 120)
    assert answer.json()["release"] == "f1"
    assert answer.json()["colour"] == colour
    assert app1.service("nginx").is_running
    assert app1.service(f"{APP}@{colour}").is_running
    wait_for(lambda: {release_of(LOAD_BALANCER) for _attempt in range(4)} == {"f1"}, timeout=60)


def test_7_an_nginx_directive_nginx_refuses_leaves_the_live_config_serving(hosts):
    app1 = hosts["django-asgi-faults-app1"]
    site = f"/etc/nginx/sites-available/{APP}.conf"
    before = app1.file(site).sha256sum
    returncode, output = run_playbook(
        "site.yml", "-e", json.dumps({"nginx_proxy_extra_directives": ["proxy_bogus_directive on;"]})
    )
    assert returncode != 0
    assert "nginx refused the site" in words(output)
    assert 'unknown directive "proxy_bogus_directive"' in words(output)
    assert app1.file(site).sha256sum == before
    assert app1.run("nginx -t").rc == 0
    assert releases_everywhere() == {name: "f1" for name in APP_URLS}
    assert release_of(LOAD_BALANCER) == "f1"
    for host in hosts.values():
        assert not host.file(LOCK).exists


def test_7b_a_load_balancer_nginx_refuses_stops_the_run_with_the_lock_released(hosts):
    # Two locations of one path: only nginx -t on the load balancer finds out.
    returncode, output = run_playbook(
        "site.yml", "-e", json.dumps({"load_balancer_websocket_locations": ["/ws/", "/ws/"]})
    )
    assert returncode != 0
    last = words(output[output.rindex("The rollout stopped") :])
    assert "django-asgi-faults-lb: setting up the load balancer failed, no app host switched" in last, last
    assert "duplicate location" in last, last
    for host in hosts.values():
        assert not host.file(LOCK).exists
    assert release_of(LOAD_BALANCER) == "f1"
    assert releases_everywhere() == {name: "f1" for name in APP_URLS}


@pytest.fixture(scope="module")
def source_with_a_failing_migration(tmp_path_factory):
    source = tmp_path_factory.mktemp("badmigration") / "demo"
    subprocess.run(["cp", "-a", str(PROJECT / "examples" / "demo"), str(source)], check=True)
    migrations = source / "hello" / "migrations"
    latest = max(path.stem for path in migrations.glob("0*.py"))
    (migrations / "9999_fails.py").write_text(
        "from django.db import migrations\n\n\n"
        "def fail(apps, schema_editor):\n"
        '    raise RuntimeError("this migration fails on purpose")\n\n\n'
        "class Migration(migrations.Migration):\n"
        f'    dependencies = [("hello", "{latest}")]\n'
        "    operations = [migrations.RunPython(fail)]\n"
    )
    return source


def test_8_a_release_whose_migrations_fail_switches_no_host(hosts, source_with_a_failing_migration):
    colours = {name: active_colour(hosts[name]) for name in APP_URLS}
    returncode, output = run_playbook(
        "site.yml",
        "-e",
        "django_app_release_id=f-bad-migration",
        "-e",
        f"django_app_source={source_with_a_failing_migration}",
        # Code in a migration is refused unless the operator vouches for it: this one runs, and fails.
        "-e",
        '{"django_app_migrations_safe": ["hello.9999_fails"]}',
    )
    assert returncode != 0
    # The last line names the app, the project's file and line, and the exception.
    last = words(output[output.rindex("The rollout stopped") :])
    assert (
        "demo: migrate failed: hello/migrations/9999_fails.py:5: RuntimeError: this migration fails on purpose; "
        "no host switched" in last
    ), last
    assert releases_everywhere() == {name: "f1" for name in APP_URLS}
    assert {name: active_colour(hosts[name]) for name in APP_URLS} == colours
    assert release_of(LOAD_BALANCER) == "f1"
    for name in ALL_HOSTS:
        assert not hosts[name].file(LOCK).exists, name


def a_copy_of_the_demo(tmp_path) -> Path:
    source = tmp_path / "demo"
    subprocess.run(["cp", "-a", str(PROJECT / "examples" / "demo"), str(source)], check=True)
    return source


def assert_the_build_stops_at_collectstatic_saying(hosts, tmp_path, source: Path, release: str, reason: str) -> None:
    """The release fails to build: the run's last line and the report give the reason; every host serves f1."""
    report = tmp_path / "report.json"
    returncode, output = run_playbook(
        "site.yml",
        "-e",
        f"django_app_release_id={release}",
        "-e",
        f"django_app_source={source}",
        "-e",
        f"rollout_report={report}",
    )
    assert returncode != 0
    # The output is YAML: a quote inside a quoted message is doubled there.
    last = words(output[output.rindex("The rollout stopped") :]).replace("''", "'")
    assert 'building the release failed at "Collect the static files into the release"' in last, last
    assert reason in last, last
    assert reason in json.loads(report.read_text())["failure"]
    assert releases_everywhere() == {name: "f1" for name in APP_URLS}
    assert release_of(LOAD_BALANCER) == "f1"
    for name in ALL_HOSTS:
        assert not hosts[name].file(LOCK).exists, name


def test_8b_a_release_whose_settings_raise_names_the_file_line_and_exception(hosts, tmp_path):
    """The most common deploy failure: settings that read an environment variable the host does not have."""
    source = a_copy_of_the_demo(tmp_path)
    settings = source / "demo" / "settings.py"
    text = settings.read_text()
    settings.write_text(text + 'HOLDOUT_KEY = os.environ["DEMO_HOLDOUT_KEY"]\n')
    line = text.count("\n") + 1
    reason = f"demo/settings.py:{line}: KeyError: 'DEMO_HOLDOUT_KEY'"
    assert_the_build_stops_at_collectstatic_saying(hosts, tmp_path, source, "f-bad-settings", reason)


def test_8c_a_release_whose_collectstatic_fails_names_the_stylesheet_and_the_missing_file(hosts, tmp_path):
    """Hashed static files (ManifestStaticFilesStorage) with a stylesheet that points at a file nobody added."""
    source = a_copy_of_the_demo(tmp_path)
    settings = source / "demo" / "settings.py"
    settings.write_text(
        settings.read_text()
        + "STORAGES = {\n"
        + '    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},\n'
        + '    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},\n'
        + "}\n"
    )
    (source / "hello" / "static" / "hello" / "style.css").write_text('body { background: url("missing.png"); }\n')
    reason = (
        "Post-processing 'hello/style.css' failed! ValueError: The file 'hello/missing.png' could not be found"
        " with ManifestStaticFilesStorage."
    )
    assert_the_build_stops_at_collectstatic_saying(hosts, tmp_path, source, "f-bad-static", reason)


def test_9_a_second_rollout_started_during_the_first_refuses_to_run(hosts):
    first = ansible_playbook(
        "site.yml", "-e", "django_app_release_id=f2", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: hosts["django-asgi-faults-lb"].file(LOCK).exists, timeout=180, interval=1)
        holder = json.loads(hosts["django-asgi-faults-lb"].file(LOCK).content_string)
        assert holder["pid"] == first.pid
        returncode, output = run_playbook("site.yml", "-e", "django_app_release_id=f3")
        assert returncode != 0
        assert "Another rollout holds the lock" in words(output)
        assert f"pid {first.pid}" in words(output)
        assert "PLAY [Set up the load balancers]" not in output
    finally:
        first_output = first.communicate(timeout=900)[0]
        print(first_output[-3000:])
    assert first.returncode == 0
    assert releases_everywhere() == {name: "f2" for name in APP_URLS}
    for name in ALL_HOSTS:
        assert not hosts[name].file(LOCK).exists, name


def test_10_a_host_lost_mid_rollout_stops_it_and_a_rerun_completes(hosts):
    lost = "django-asgi-faults-app2"
    release_before = release_of(APP_URLS[lost])
    served: list[int] = []
    stop = threading.Event()

    def keep_asking():
        for _attempt in range(2000):  # bounded: ~10 minutes at most
            if stop.is_set():
                return
            try:
                served.append(http_get(f"{LOAD_BALANCER}/whoami", timeout=10).status)
            except OSError:
                served.append(0)
            time.sleep(0.3)

    rollout = ansible_playbook(
        "site.yml", "-e", "django_app_release_id=f3", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    asker = threading.Thread(target=keep_asking, daemon=True)
    asker.start()
    lines = []
    batches = 0
    try:
        for line in rollout.stdout:
            lines.append(line)
            if line.startswith("PLAY [Switch the app hosts, batch by batch]"):
                batches += 1
                if batches == 2:
                    # app1's batch is done (batches go in inventory order); app2's is about to start: pull the plug.
                    docker("kill", lost)
        rollout.wait(timeout=900)
        output = "".join(lines)
        print(output[-3000:])
        assert rollout.returncode != 0
        # Over SSH the host is UNREACHABLE; over the docker connection its task fails.
        assert f"fatal: [{lost}]: UNREACHABLE!" in output or f"fatal: [{lost}]: FAILED!" in output
        # The host that was done serves the new release, alone behind the load balancer.
        assert release_of(APP_URLS["django-asgi-faults-app1"]) == "f3"
        assert {release_of(LOAD_BALANCER) for _attempt in range(6)} == {"f3"}
        stop.set()
        asker.join(timeout=30)
        print(f"load balancer answers during the rollout: {len(served)}, failed: {sum(s != 200 for s in served)}")
        assert served and all(status == 200 for status in served)
    finally:
        # The host comes back whatever happened above, so the tests after this one find a whole fleet.
        stop.set()
        docker("start", lost)

    # The host comes back on the release it ran, then a re-run finishes the job.
    back = wait_for(lambda: (a := http_get(f"{APP_URLS[lost]}/whoami")).status == 200 and a, timeout=180, interval=1)
    assert back.json()["release"] == release_before
    # Whether the stopped run released its locks depends on where the kill landed: a task that
    # fails is rescued and the run reports and unlocks; a host gone between tasks ends the play.
    # A lock left behind is taken over, never refused.
    stale = [name for name in ALL_HOSTS if hosts[name].file(LOCK).exists]
    returncode, output = run_playbook("site.yml", "-vvv", "--diff", *CONVERGED_STATE)
    VERBOSE_RUN["output"] = output
    assert returncode == 0
    assert ("Took over the rollout lock" in words(output)) == bool(stale), stale
    assert releases_everywhere() == {name: "f3" for name in APP_URLS}
    assert {release_of(LOAD_BALANCER) for _attempt in range(6)} == {"f3"}
    for name in ALL_HOSTS:
        assert not hosts[name].file(LOCK).exists, name


def test_10b_a_lock_left_by_a_killed_controller_is_taken_over(hosts):
    # The controller dies (kill -9) while it holds the lock on every host; the next run must not
    # wait for a run that will never end.
    killed = ansible_playbook("site.yml", *CONVERGED_STATE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: all(hosts[name].file(LOCK).exists for name in ALL_HOSTS), timeout=180, interval=0.5)
    finally:
        killed.kill()
        killed.wait(timeout=60)
    holder = json.loads(hosts["django-asgi-faults-lb"].file(LOCK).content_string)
    assert holder["pid"] == killed.pid
    returncode, output = run_playbook("site.yml", *CONVERGED_STATE)
    assert returncode == 0, output[-3000:]
    assert "Took over the rollout lock" in words(output)
    assert f"run {holder['run']}" in words(output)
    for name in ALL_HOSTS:
        assert not hosts[name].file(LOCK).exists, name


def test_11_secrets_never_appear_in_a_verbose_run():
    output = VERBOSE_RUN.get("output")
    assert output, "test 10 did not get to its verbose run"
    # The run changed the env file (a rotated key) with --diff and -vvv.
    assert "/etc/demo/env" in output
    assert SECRET_KEY not in output
    assert ROTATED_SECRET_KEY not in output


# --- Check mode ------------------------------------------------------------------------


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines as {host: {ok: .., changed: .., failed: ..}}."""
    counts = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        name, _separator, figures = line.partition(" : ")
        if figures:
            counts[name.strip()] = {k: int(v) for k, v in (pair.split("=") for pair in figures.split())}
    return counts


def test_12_check_mode_on_the_converged_fleet_changes_nothing_and_fails_nothing():
    returncode, output = run_playbook("site.yml", "--check", "--diff", *CONVERGED_STATE)
    assert returncode == 0
    figures = recap(output)
    assert set(figures) == set(ALL_HOSTS), figures
    assert all(host["changed"] == 0 and host["failed"] == 0 for host in figures.values()), figures


def test_13_check_mode_with_a_pending_change_shows_the_diff_and_writes_nothing(hosts):
    site = f"/etc/nginx/sites-available/{APP}.conf"
    before = {name: hosts[name].file(site).sha256sum for name in APP_URLS}
    returncode, output = run_playbook(
        "site.yml", "--check", "--diff", *CONVERGED_STATE, "-e", "nginx_proxy_client_timeout=20"
    )
    assert returncode == 0
    assert "-    client_body_timeout 30s;" in output
    assert "+    client_body_timeout 20s;" in output
    assert all(recap(output)[name]["changed"] > 0 for name in APP_URLS)
    assert {name: hosts[name].file(site).sha256sum for name in APP_URLS} == before
    assert releases_everywhere() == {name: "f3" for name in APP_URLS}


# --- Maintenance mode ----------------------------------------------------------------

MAINTENANCE_PAGE_TEXT = "Down for maintenance"
FLAG = f"/etc/nginx/maintenance/{APP}-lb.on"
# Release f4 with the rotated key: the fleet where test 14 leaves it, and where test 15 keeps it.
MAINTENANCE_STATE = ["-e", "django_app_release_id=f4", *CONVERGED_STATE[2:]]


class Poller:
    """Asks the load balancer for /whoami every 0.25 s in a thread (at most 2400 times, about 10 minutes)."""

    def __init__(self):
        self.answers: list[tuple[int, str | None, bool]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        for _attempt in range(2400):
            if self.stop.is_set():
                return
            try:
                answer = http_get(f"{LOAD_BALANCER}/whoami", timeout=10)
                page = MAINTENANCE_PAGE_TEXT in answer.body.decode(errors="replace")
                self.answers.append((answer.status, answer.headers.get("retry-after"), page))
            except OSError:
                self.answers.append((0, None, False))
            time.sleep(0.25)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.stop.set()
        self.thread.join(timeout=30)

    def saw_maintenance(self) -> bool:
        return any(status == 503 for status, _retry_after, _page in self.answers)

    def summary(self) -> str:
        runs: list[list] = []
        for status, _retry_after, _page in self.answers:
            if runs and runs[-1][0] == status:
                runs[-1][1] += 1
            else:
                runs.append([status, 1])
        return ", ".join(f"{count} x {status}" for status, count in runs)


def assert_maintenance_answers(answers):
    """Every answer is the app's (200) or the maintenance page (503, Retry-After, the page); nothing else."""
    assert answers
    for status, retry_after, page in answers:
        assert status in (200, 503), answers
        if status == 503:
            assert retry_after == "300" and page, answers


def assert_passes_maintenance_from_the_load_balancer(lb_host):
    """From the load balancer itself (127.0.0.1/32 allowed) the app answers, and the health path passes."""
    for path in ("/whoami", "/-/health"):
        status = lb_host.check_output(f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 http://127.0.0.1{path}")
        assert status == "200", path


def test_14_maintenance_mode_covers_the_migration_and_the_switch_and_ends_with_the_run(hosts, tmp_path):
    lb_host = hosts["django-asgi-faults-lb"]
    output_file = tmp_path / "site.log"
    with Poller() as poller, output_file.open("w") as output:
        rollout = ansible_playbook(
            "site.yml", "-e", "rollout_maintenance=true", *MAINTENANCE_STATE, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            wait_for(poller.saw_maintenance, timeout=600, interval=0.5)
            # While the site is in maintenance: a client outside the allowed networks still reaches
            # the health path (the app hosts answer it, and refuse it to the public: 404, not 503) ...
            health = http_get(f"{LOAD_BALANCER}/-/health")
            assert health.status == 404, health
            # ... and the allowed network reaches everything.
            assert_passes_maintenance_from_the_load_balancer(lb_host)
            # The flag says a rollout turned it on (a maintenance turned on by hand it would leave on, test 16).
            assert lb_host.file(FLAG).content_string == "rollout\n"
            assert rollout.poll() is None, "the run ended before the checks made during it"
        finally:
            rollout.wait(timeout=900)
    text = output_file.read_text()
    print(text[-3000:])
    print(f"load balancer answers during the run: {poller.summary()}")
    assert rollout.returncode == 0
    assert_maintenance_answers(poller.answers)
    # Nothing but the page in between: 200s, then only 503s, then 200s.
    statuses = "".join("m" if status == 503 else "." for status, _retry_after, _page in poller.answers)
    assert statuses.strip(".") and set(statuses.strip(".")) == {"m"}, poller.summary()
    assert not lb_host.file(FLAG).exists
    assert http_get(f"{LOAD_BALANCER}/whoami").status == 200
    assert releases_everywhere() == {name: "f4" for name in APP_URLS}


def test_15_a_run_that_fails_mid_way_lifts_maintenance_mode_too(hosts, tmp_path):
    broken = tmp_path / "demo"
    subprocess.run(["cp", "-a", str(PROJECT / "examples" / "demo"), str(broken)], check=True)
    asgi = broken / "demo" / "asgi.py"
    asgi.write_text(asgi.read_text() + '\nraise RuntimeError("release f5 is broken on purpose")\n')
    with Poller() as poller:
        returncode, output = run_playbook(
            "site.yml",
            "-e",
            "rollout_maintenance=true",
            *MAINTENANCE_STATE,
            "-e",
            "django_app_release_id=f5-broken",
            "-e",
            f"django_app_source={broken}",
            "-e",
            "asgi_server_health_retries=5",
        )
    print(f"load balancer answers during the run: {poller.summary()}")
    assert returncode != 0
    assert "did not pass its health probe" in words(output)
    assert poller.saw_maintenance()
    assert_maintenance_answers(poller.answers)
    assert not hosts["django-asgi-faults-lb"].file(FLAG).exists
    assert http_get(f"{LOAD_BALANCER}/whoami").status == 200
    assert releases_everywhere() == {name: "f4" for name in APP_URLS}
    for name in ALL_HOSTS:
        assert not hosts[name].file(LOCK).exists, name


def run_entry_point(tmp_path, host: str, role: str, variables: dict) -> str:
    """A role's maintenance entry point run on one host, as playbooks/tasks/maintenance.yml runs it."""
    playbook = tmp_path / f"{role}-maintenance.yml"
    task = {"name": "Maintenance mode", "ansible.builtin.include_role": {"name": role, "tasks_from": "maintenance"}}
    play = {"name": f"Maintenance mode on {host}", "hosts": host, "gather_facts": False, "tasks": [task]}
    playbook.write_text(json.dumps([play | {"vars": variables}]))
    returncode, output = run_playbook(str(playbook))
    assert returncode == 0, output[-3000:]
    return output


def test_16_the_maintenance_playbook_turns_it_on_and_off_and_a_rollout_leaves_it_on(hosts, tmp_path):
    lb_host = hosts["django-asgi-faults-lb"]
    returncode, output = run_playbook("playbooks/maintenance.yml", "-e", "maintenance=sometimes")
    assert returncode != 0
    assert "maintenance must be on or off" in words(output)
    assert not lb_host.file(FLAG).exists

    returncode, _output = run_playbook("playbooks/maintenance.yml", "-e", "maintenance=on")
    assert returncode == 0
    answer = http_get(f"{LOAD_BALANCER}/whoami")
    assert answer.status == 503 and answer.headers["retry-after"] == "300", answer
    assert MAINTENANCE_PAGE_TEXT in answer.body.decode()
    assert answer.headers["x-content-type-options"] == "nosniff"
    # A POST gets the page too, not a 405 of nginx's static files.
    request = urllib.request.Request(f"{LOAD_BALANCER}/db", data=b"x=1", method="POST")  # noqa: S310  (loopback only)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert refused.value.code == 503 and MAINTENANCE_PAGE_TEXT in refused.value.read().decode()
    assert_passes_maintenance_from_the_load_balancer(lb_host)

    # A rollout (site.yml passes load_balancer_maintenance_by: rollout, test 14) finds it on by
    # hand: it leaves it on when it ends, and says so.
    lb_role = "django_asgi.rollout.load_balancer"
    output = run_entry_point(
        tmp_path,
        "django-asgi-faults-lb",
        lb_role,
        {"load_balancer_maintenance": False, "load_balancer_maintenance_by": "rollout"},
    )
    assert "maintenance mode was turned on by hand" in words(output)
    assert http_get(f"{LOAD_BALANCER}/whoami").status == 503

    returncode, _output = run_playbook("playbooks/maintenance.yml", "-e", "maintenance=off")
    assert returncode == 0
    assert not lb_host.file(FLAG).exists
    assert http_get(f"{LOAD_BALANCER}/whoami").status == 200
    for name in ALL_HOSTS:
        assert not hosts[name].file(LOCK).exists, name


def test_17_an_app_hosts_own_nginx_has_the_same_switch(hosts, tmp_path):
    """Without load balancers, maintenance mode is each app host's nginx: nginx_proxy's entry point."""
    app1, url = hosts["django-asgi-faults-app1"], APP_URLS["django-asgi-faults-app1"]
    role = "django_asgi.rollout.nginx_proxy"
    run_entry_point(tmp_path, "django-asgi-faults-app1", role, {"nginx_proxy_maintenance": True})
    try:
        answer = http_get(f"{url}/whoami")
        assert answer.status == 503 and answer.headers["retry-after"] == "300", answer
        assert MAINTENANCE_PAGE_TEXT in answer.body.decode()
        assert answer.headers["x-frame-options"] == "DENY"
        # The health path passes, for the host itself.
        assert app1.check_output("curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1/-/health") == "200"
    finally:
        run_entry_point(tmp_path, "django-asgi-faults-app1", role, {"nginx_proxy_maintenance": False})
    assert http_get(f"{url}/whoami").status == 200
