"""One host per platform deployed by site.yml: what a user of the app and its operator see."""

from __future__ import annotations

import re

from conftest import (
    APP,
    assert_restarted_after_sigkill,
    assert_socket_only_for_nginx,
    http_get,
    main_pid,
    unit_property,
)


def test_serving_unit_is_active_enabled_and_runs_as_the_app_user(host, serving_unit):
    service = host.service(serving_unit)
    assert service.is_running
    assert service.is_enabled
    pid = main_pid(host, serving_unit)
    assert host.check_output(f"ps -o user= -p {pid}").strip() == APP
    assert host.user(APP).shell == "/usr/sbin/nologin"


def test_unit_has_a_restart_policy_and_a_graceful_stop(host, serving_unit):
    assert unit_property(host, serving_unit, "Restart") == "always"
    assert unit_property(host, serving_unit, "KillMode") == "mixed"
    assert unit_property(host, serving_unit, "RestartUSec") != "0"
    assert unit_property(host, serving_unit, "StartLimitBurst") == "5"
    assert unit_property(host, serving_unit, "UnitFileState") == "enabled"


def test_whoami_through_nginx_returns_django_json_with_the_release(host, base_url, serving_unit):
    answer = http_get(f"{base_url}/whoami")
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    seen = answer.json()
    environment = unit_property(host, serving_unit, "Environment")
    release = re.search(r"ROLLOUT_RELEASE_ID=(\S+)", environment).group(1)
    assert seen["release"] == release
    assert host.file(f"/srv/{APP}/releases/{release}/.release.json").exists
    assert seen["server"] == "uvicorn"
    assert seen["scheme"] == "http"
    assert seen["host"] == "127.0.0.1"


def test_django_sees_the_true_client_address_from_nginx(host):
    seen = host.check_output("curl -sS --max-time 5 http://127.0.0.1/whoami")
    assert '"client": "127.0.0.1"' in seen


def test_static_file_is_served_by_nginx(host, base_url):
    answer = http_get(f"{base_url}/static/hello/hello.txt")
    assert answer.status == 200
    assert answer.body.decode().strip() == "hello from nginx"
    assert answer.headers["server"] == "nginx"
    # Set by nginx's 'expires'; Django's responses carry no such header.
    assert "max-age=3600" in answer.headers.get("cache-control", "")


def test_database_view_writes_and_reads_a_row(host, base_url):
    before = http_get(f"{base_url}/db").json()["rows"]
    created = host.check_output("curl -sS --max-time 5 -X POST -d note=molecule http://127.0.0.1/db")
    assert '"rows"' in created
    assert http_get(f"{base_url}/db").json()["rows"] == before + 1


def test_server_killed_with_sigkill_is_restarted_and_nginx_answers_again(host, base_url, serving_unit):
    assert_restarted_after_sigkill(host, base_url, serving_unit)


def test_env_file_is_not_world_readable(host):
    env_file = host.file(f"/etc/{APP}/env")
    assert env_file.user == "root"
    assert env_file.group == APP
    assert env_file.mode == 0o640


def test_socket_is_reachable_by_nginx_and_not_by_other_users(host, serving_unit):
    assert_socket_only_for_nginx(host, serving_unit)


def test_unknown_host_header_is_refused_by_nginx(host):
    refused = host.run("curl -sS --max-time 5 -H 'Host: evil.example' http://127.0.0.1/whoami")
    assert refused.rc != 0  # nginx closes the connection (444) before Django sees it


def test_release_venv_runs_the_hosts_own_python(host, serving_unit):
    """The wheelhouse was downloaded for this host's Python (3.11 on Debian 12, 3.13 on Debian 13)."""
    command = unit_property(host, serving_unit, "ExecStart")
    venv_python = re.search(r"path=(\S+)/bin/\w+ ;", command).group(1) + "/bin/python"
    version = "import sys; print(sys.version_info[:2])"
    assert host.check_output(f"{venv_python} -c '{version}'") == host.check_output(f"/usr/bin/python3 -c '{version}'")
    assert host.run(f"{venv_python} -c 'import uvloop, httptools'").rc == 0


def test_the_operators_command_runs_django_on_the_serving_release_as_the_app_user(host, serving_unit):
    checked = host.run(f"{APP}-manage check")
    assert checked.rc == 0, checked.stderr
    assert "System check identified no issues" in checked.stdout
    environment = unit_property(host, serving_unit, "Environment")
    release = re.search(r"ROLLOUT_RELEASE_ID=(\S+)", environment).group(1)
    script = "import os, django.conf; print(os.getuid(), os.environ['ROLLOUT_RELEASE_ID'], django.conf.settings.DEBUG)"
    # Django 5.2's shell first says what it imported; the script's line is the last.
    seen = host.check_output(f'{APP}-manage shell -c "{script}"').splitlines()[-1].split()
    assert seen == [str(host.user(APP).uid), release, "False"]


def test_the_operators_command_runs_in_the_units_sandbox_and_for_root_only(host):
    written = host.run(f"{APP}-manage shell -c \"open('/etc/{APP}-escape', 'w')\"")
    assert written.rc != 0
    assert "Read-only file system" in written.stderr
    assert not host.file(f"/etc/{APP}-escape").exists
    refused = host.run(f"runuser -u nobody -- {APP}-manage check")
    assert refused.rc != 0
    assert "only root may run it" in refused.stderr
