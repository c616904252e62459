"""The canary: releases judged on what their users got, from the app hosts' request logs, rolled under load.

Runs last (after test_schema.py), on the same fleet, or alone after a converge: each release is the
demo with the migrations the database holds (those test_schema.py applied, if it ran), and one change
of its own. Windows are short (8 s) to keep the scenario's time down.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import testinfra

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests" / "load"))

from loadgen import LoadConfig, LoadReport  # noqa: E402
from test_rolling import APP_HOSTS, INVENTORY, LOAD_BALANCER, run_report  # noqa: E402
from test_schema import LOCK_FILE  # noqa: E402
from test_schema import roll as rolled  # noqa: E402

from conftest import words  # noqa: E402

REQUEST_LOG = "/var/log/nginx/demo.requests.json"
SECONDS = 8
WINDOW = ["-e", f"rollout_canary_seconds={SECONDS}", "-e", "rollout_canary_min_requests=30"]

# The migrations test_schema.py adds, in its order: (name, depends on, operations).
SCHEMA_MIGRATIONS = [
    (
        "0003_hit_tag_label",
        "0002_job_tick",
        'migrations.AddField("hit", "tag", models.CharField(max_length=20, null=True)),\n'
        '        migrations.CreateModel(name="Label", fields=[("id", models.BigAutoField(primary_key=True))]),',
    ),
    ("0004_remove_hit_note", "0003_hit_tag_label", 'migrations.RemoveField("hit", "note"),'),
]
MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hello", "{previous}")]
    operations = [
        {operations}
    ]
"""
WHOAMI = "async def whoami(request: HttpRequest) -> JsonResponse:\n"


@pytest.fixture(scope="module")
def app_hosts():
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}") for name in APP_HOSTS}


@pytest.fixture(scope="module")
def database():
    return testinfra.get_host(f"ansible://django-asgi-rolling-db?ansible_inventory={INVENTORY}")


def release(base: Path, name: str, database, whoami: str) -> Path:
    """The demo on the schema the database holds, with ``whoami`` put at the start of /whoami's view."""
    source = base / name / "demo"
    shutil.copytree(PROJECT / "examples" / "demo", source, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    applied = database.check_output(
        "sudo -u postgres psql -d demo -tAc \"SELECT name FROM django_migrations WHERE app = 'hello'\""
    ).split()
    for migration, previous, operations in SCHEMA_MIGRATIONS:
        if migration in applied:
            text = MIGRATION.format(previous=previous, operations=operations)
            (source / "hello" / "migrations" / f"{migration}.py").write_text(text)
    if "0004_remove_hit_note" in applied:
        models = source / "hello" / "models.py"
        models.write_text(models.read_text().replace("    note = models.CharField(max_length=200, blank=True)\n", ""))
        views = source / "hello" / "views.py"
        views.write_text(views.read_text().replace("Hit.objects.create(note=note)", "Hit.objects.create()"))
    views = source / "hello" / "views.py"
    assert WHOAMI in views.read_text()
    views.write_text(views.read_text().replace(WHOAMI, WHOAMI + whoami))
    return source


@pytest.fixture(scope="module")
def sources(tmp_path_factory, database) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("canary")
    return {
        # One /whoami in five fails (per process); the health path and every other page answer.
        "c1": release(
            base,
            "c1",
            database,
            "    whoami.calls = getattr(whoami, 'calls', 0) + 1\n"
            "    if whoami.calls % 5 == 0:\n"
            '        raise RuntimeError("one request in five fails on purpose")\n',
        ),
        # /whoami takes 250 ms more: a third of the GETs, so the p95 is theirs.
        "c2": release(base, "c2", database, "    await asyncio.sleep(0.25)\n"),
        # Nothing wrong with it.
        "c3": release(base, "c3", database, "    pass\n"),
    }


# GETs and WebSockets, no writes: the canary judges the answers to these.
GET_LOAD = LoadConfig(
    base_url=LOAD_BALANCER,
    duration=600,
    max_requests=200000,
    http_workers=3,
    slow_workers=0,
    post_workers=0,
    websocket_sessions=1,
    websocket_session_seconds=15,
    request_interval=0.02,
)


def roll(source: Path, release_id: str, report: Path, *arguments: str) -> tuple[int, str, LoadReport]:
    """site.yml to a release with a canary window, under GET_LOAD through the load balancer."""
    return rolled(source, release_id, report, *WINDOW, *arguments, config=GET_LOAD)


def host_release(host) -> str:
    return json.loads(host.check_output("curl -sS --max-time 5 http://127.0.0.1/whoami"))["release"]


def serving(app_hosts) -> str:
    releases = {host_release(host) for host in app_hosts.values()}
    assert len(releases) == 1, releases
    return releases.pop()


def answered(host, release_id: str, status: int) -> int:
    """Requests of the host's JSON request log that ``release_id`` answered with ``status``."""
    return int(host.check_output(f'grep -c \'"status":{status},.*"release":"{release_id}"\' {REQUEST_LOG} || true'))


def assert_stopped_and_rolled_back(app_hosts, code, output, report_path, release_id, previous) -> dict:
    assert code != 0
    text = words(output)
    assert f"The canary stopped the rollout: {APP_HOSTS[0]} on {release_id}: " in text, text[-3000:]
    assert ": rolled back." in text, text[-3000:]
    run = run_report(report_path)
    assert run["outcome"] == "failed" and run["failure"].startswith(f"{APP_HOSTS[0]} on {release_id}: ")
    [batch] = run["batches"]
    window = batch["canary"]
    assert window["judged"] is True and window["verdict"] == "stopped", window
    assert window["canary"]["hosts"] == [APP_HOSTS[0]] and window["baseline"]["hosts"] == APP_HOSTS[1:]
    assert window["baseline"]["window"] == "same" and window["baseline"]["requests"] >= 30, window
    assert run["hosts"][APP_HOSTS[0]]["outcome"] == "rolled back", run["hosts"]
    assert all(run["hosts"][name]["outcome"] == "not switched" for name in APP_HOSTS[1:]), run["hosts"]
    assert {run["hosts"][name]["release"] for name in APP_HOSTS} == {previous}
    assert serving(app_hosts) == previous
    for name, host in app_hosts.items():
        assert not host.file(LOCK_FILE).exists, name
    return window


def test_9_a_release_failing_one_request_in_five_is_stopped_after_its_window_and_rolled_back(
    app_hosts, sources, tmp_path
):
    previous = serving(app_hosts)
    # The log keeps what an earlier run of this test answered as c1.
    logged = {name: answered(host, "c1", 500) for name, host in app_hosts.items()}
    code, output, figures = roll(sources["c1"], "c1", tmp_path / "report.json")
    window = assert_stopped_and_rolled_back(app_hosts, code, output, tmp_path / "report.json", "c1", previous)
    assert window["canary"]["error_rate"] > 0.01 and window["baseline"]["errors"] == 0, window
    rate = (
        f"{window['canary']['error_rate'] * 100:.1f}% 5xx (budget 1%) over {SECONDS} s, {window['canary']['requests']}"
    )
    assert rate in words(output) and rate in window["message"], window["message"]
    # The requests that failed are the 500s c1 answered, no more: none from the switch or the rollback.
    assert figures.sent > 300 and figures.websocket_failed == 0, figures.summary()
    assert all(failure.endswith("GET /whoami: HTTP 500") for failure in figures.failures), figures.failures
    time.sleep(2)  # nginx flushes its request log every second
    failed = {name: answered(host, "c1", 500) - logged[name] for name, host in app_hosts.items()}
    assert figures.failed == failed[APP_HOSTS[0]] > 0, (failed, figures.summary())
    assert all(failed[name] == 0 for name in APP_HOSTS[1:]), failed


def test_10_a_release_slower_on_one_page_is_stopped_on_its_p95_and_rolled_back(app_hosts, sources, tmp_path):
    previous = serving(app_hosts)
    code, output, figures = roll(
        sources["c2"], "c2", tmp_path / "report.json", "-e", "rollout_canary_max_latency_ratio=3"
    )
    window = assert_stopped_and_rolled_back(app_hosts, code, output, tmp_path / "report.json", "c2", previous)
    assert window["canary"]["errors"] == 0 and window["canary"]["p95_ms"] >= 250, window
    assert window["canary"]["p95_ms"] > 3 * window["baseline"]["p95_ms"], window
    assert f"p95 {window['canary']['p95_ms']} ms" in window["message"] and "(budget 3x)" in window["message"]
    assert figures.sent > 300 and figures.failed == 0, figures.summary()


def test_11_a_good_release_passes_every_window_and_the_report_shows_the_figures(app_hosts, sources, tmp_path):
    # A release id the fleet does not serve yet (a second run of the file finds c3 serving).
    release_id = "c3" if serving(app_hosts) != "c3" else "c4"
    # Two batches (app1 and app2, then app3): two windows, the first against app3, the last against its own past.
    code, output, figures = roll(
        sources["c3"],
        release_id,
        tmp_path / "report.json",
        "-e",
        "rollout_canary_batches=every",
        "-e",
        "rollout_serial=2",
    )
    assert code == 0, words(output)[-3000:]
    assert figures.sent > 300 and figures.failed == 0, figures.summary()
    run = run_report(tmp_path / "report.json")
    assert run["outcome"] == "succeeded"
    windows = [batch["canary"] for batch in run["batches"]]
    assert [window["verdict"] for window in windows] == ["passed"] * 2, windows
    first, last = windows
    assert first["canary"]["hosts"] == APP_HOSTS[:2] and first["baseline"]["hosts"] == APP_HOSTS[2:], first
    assert first["baseline"]["window"] == "same", first
    # The last batch has no host left on the previous release: its own hosts before their switch.
    assert last["canary"]["hosts"] == APP_HOSTS[2:] and last["baseline"]["hosts"] == APP_HOSTS[2:], last
    assert last["baseline"]["window"] == "before switch", last
    for window in windows:
        assert window["judged"] is True and window["release"] == release_id and window["seconds"] == SECONDS
        assert window["canary"]["requests"] >= 30 and window["canary"]["errors"] == 0, window
        assert window["baseline"]["requests"] >= 30, window
        assert window["message"].endswith("within budget")
        assert f"Canary after batch {window['batch']}: {window['message']}" in words(output)
    assert serving(app_hosts) == release_id
    assert all(run["hosts"][name]["outcome"] == "switched" for name in APP_HOSTS), run["hosts"]
