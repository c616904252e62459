"""Releases whose migrations the serving release must live beside, rolled under write load.

Runs after test_rolling.py, on the same fleet. Each release is the demo with
one more migration: one that only adds (rolls in one phase), one that drops
the column the serving release writes on every POST /db (refused by default,
rolled in two phases when asked), and one whose table a test session holds
locked (fails within the lock timeout, naming the table).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import testinfra

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests" / "load"))

from loadgen import LoadConfig, LoadReport, LoadRun  # noqa: E402
from test_rolling import APP_HOSTS, INVENTORY, LOAD_BALANCER, host_release, run_report  # noqa: E402

from conftest import run_playbook, words  # noqa: E402

LOCK_FILE = "/run/lock/django-asgi-rollout-demo.json"
# psql on the database host, as PostgreSQL's superuser, in the demo's database.
PSQL = ["docker", "exec", "django-asgi-rolling-db", "sudo", "-u", "postgres", "psql", "-d", "demo"]
END_THE_HOLDER = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE query LIKE '%LOCK TABLE hello_hit%' AND pid <> pg_backend_pid()"
)

MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hello", "{previous}")]
    operations = [
        {operations}
    ]
"""


def release(base: Path, name: str, previous: Path, migration: str, depends_on: str, operations: str) -> Path:
    """The previous release's source plus one migration (and whatever the test changes in its code)."""
    source = base / name / "demo"
    shutil.copytree(previous, source, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    text = MIGRATION.format(previous=depends_on, operations=operations)
    (source / "hello" / "migrations" / f"{migration}.py").write_text(text)
    return source


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("schema")
    found = {}
    # v5 adds a nullable column and a table: the serving release lives beside both.
    found["v5"] = release(
        base,
        "v5",
        PROJECT / "examples" / "demo",
        "0003_hit_tag_label",
        "0002_job_tick",
        'migrations.AddField("hit", "tag", models.CharField(max_length=20, null=True)),\n'
        '        migrations.CreateModel(name="Label", fields=[("id", models.BigAutoField(primary_key=True))]),',
    )
    # v6 stops writing Hit.note and drops the column: v5 inserts it on every POST /db.
    found["v6"] = release(
        base, "v6", found["v5"], "0004_remove_hit_note", "0003_hit_tag_label", 'migrations.RemoveField("hit", "note"),'
    )
    models = found["v6"] / "hello" / "models.py"
    models.write_text(models.read_text().replace("    note = models.CharField(max_length=200, blank=True)\n", ""))
    views = found["v6"] / "hello" / "views.py"
    assert "Hit.objects.create(note=note)" in views.read_text()
    views.write_text(views.read_text().replace("Hit.objects.create(note=note)", "Hit.objects.create()"))
    # v7 adds a column to the table a test session will hold locked.
    found["v7"] = release(
        base,
        "v7",
        found["v6"],
        "0005_hit_flag",
        "0004_remove_hit_note",
        'migrations.AddField("hit", "flag", models.BooleanField(null=True)),',
    )
    return found


# Write-heavy: two POST /db workers write Hit.note, which the releases below drop.
WRITE_LOAD = LoadConfig(
    base_url=LOAD_BALANCER,
    duration=600,
    max_requests=200000,
    http_workers=2,
    post_workers=2,
    request_interval=0.01,
    websocket_session_seconds=15,
)


def roll(
    source: Path, release_id: str, report: Path, *arguments: str, config: LoadConfig = WRITE_LOAD
) -> tuple[int, str, LoadReport]:
    """site.yml to a release under load through the load balancer (write-heavy unless told)."""
    with LoadRun(config) as load:
        code, output = run_playbook(
            "site.yml",
            "-e",
            f"django_app_source={source}",
            "-e",
            f"django_app_release_id={release_id}",
            "-e",
            f"rollout_report={report}",
            *arguments,
            inventory=INVENTORY,
        )
        figures = load.stop()
    print(f"load during {release_id} {' '.join(arguments)}:\n{figures.summary()}")
    return code, output, figures


def assert_no_failure(figures: LoadReport) -> None:
    assert figures.sent > 100, figures.summary()
    assert figures.failed == 0, figures.failures
    assert figures.websocket_failed == 0, figures.failures


@pytest.fixture(scope="module")
def app_hosts():
    return {name: testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}") for name in APP_HOSTS}


def psql(query: str) -> str:
    return subprocess.run([*PSQL, "-tAc", query], check=True, capture_output=True, text=True).stdout.strip()


def hit_columns() -> list[str]:
    return psql("SELECT column_name FROM information_schema.columns WHERE table_name = 'hello_hit'").split()


def assert_unlocked(app_hosts) -> None:
    for name, host in app_hosts.items():
        assert not host.file(LOCK_FILE).exists, name


def test_5_an_additive_release_rolls_in_one_phase_under_write_load(app_hosts, sources, tmp_path):
    code, _output, figures = roll(sources["v5"], "v5", tmp_path / "report.json")
    assert code == 0
    assert_no_failure(figures)
    assert figures.by_kind["post"]["sent"] > 20, figures.summary()
    run = run_report(tmp_path / "report.json")
    migrations = run["hosts"][APP_HOSTS[0]]["migrations"]
    assert [entry["migration"] for entry in migrations["before_switch"]] == ["hello.0003_hit_tag_label"]
    assert migrations["after_switch"] == [] and migrations["waiting_for_after_switch"] == []
    assert all(run["hosts"][name]["migrations"] is None for name in APP_HOSTS[1:])
    assert {host_release(host) for host in app_hosts.values()} == {"v5"}


def test_6_a_release_that_drops_a_column_the_serving_release_writes_is_refused_before_any_change(
    app_hosts, sources, tmp_path
):
    code, output, figures = roll(sources["v6"], "v6", tmp_path / "report.json")
    assert code != 0
    assert_no_failure(figures)
    text = words(output)
    assert (
        "demo: migration hello.0004_remove_hit_note would break the serving release during the rollout: "
        "RemoveField hello.hit.note drops a column the serving release reads or writes" in text
    ), text[-2000:]
    assert "-e rollout_migrations=two_phase" in text and "django_app_migrations_safe" in text
    assert "-e rollout_maintenance=true" in text
    assert "no host switched" in text
    run = run_report(tmp_path / "report.json")
    assert run["outcome"] == "failed" and "hello.0004_remove_hit_note" in run["failure"]
    assert {host_release(host) for host in app_hosts.values()} == {"v5"}
    assert "note" in hit_columns()
    assert_unlocked(app_hosts)


def test_7_the_same_release_in_two_phases_fails_no_request_and_drops_the_column_at_the_end(
    app_hosts, sources, tmp_path
):
    code, _output, figures = roll(sources["v6"], "v6", tmp_path / "report.json", "-e", "rollout_migrations=two_phase")
    assert code == 0
    assert_no_failure(figures)
    assert figures.by_kind["post"]["sent"] > 20, figures.summary()
    run = run_report(tmp_path / "report.json")
    migrations = run["hosts"][APP_HOSTS[0]]["migrations"]
    assert migrations["before_switch"] == []
    assert [entry["migration"] for entry in migrations["after_switch"]] == ["hello.0004_remove_hit_note"]
    assert migrations["made_nullable"] == ["hello_hit.note"]
    assert migrations["waiting_for_after_switch"] == []
    assert {host_release(host) for host in app_hosts.values()} == {"v6"}
    assert "note" not in hit_columns()
    assert_unlocked(app_hosts)


class Prober:
    """GETs of pages that use other tables (and none) through the load balancer, until stopped (bounded)."""

    def __init__(self, paths: tuple[str, ...] = ("/tasks", "/whoami", "/ticks"), limit: int = 2000):
        self.paths, self.limit = paths, limit
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.answered + len(self.failures) < self.limit:
            path = self.paths[(self.answered + len(self.failures)) % len(self.paths)]
            try:
                with urllib.request.urlopen(f"{LOAD_BALANCER}{path}", timeout=5) as response:  # noqa: S310 (loopback)
                    response.read()
                self.answered += 1
            except (OSError, urllib.error.URLError) as error:
                self.failures.append(f"{path}: {error!r}")
            self._stop.wait(0.1)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_8_a_migration_behind_a_held_table_lock_fails_within_the_timeout_naming_the_table(app_hosts, sources, tmp_path):
    # A session holds hello_hit as a long transaction would, until the test ends it.
    holder = subprocess.Popen(
        [*PSQL, "-c", "BEGIN; LOCK TABLE hello_hit IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(300);"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        locked = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'hello_hit'"
        while time.monotonic() < deadline and psql(locked) == "0":
            time.sleep(0.5)
        with Prober() as probes:
            started = time.monotonic()
            code, output = run_playbook(
                "site.yml",
                "-e",
                f"django_app_source={sources['v7']}",
                "-e",
                "django_app_release_id=v7",
                "-e",
                f"rollout_report={tmp_path / 'report.json'}",
                "-e",
                "django_app_migrate_lock_timeout=2",
                "-e",
                "django_app_migrate_lock_retries=1",
                inventory=INVENTORY,
            )
            seconds = time.monotonic() - started
    finally:
        psql(END_THE_HOLDER)
        holder.wait(timeout=30)
    assert code != 0
    text = words(output)
    assert "hello.0005_hit_flag could not lock hello_hit within 2 s, 2 times" in text, text[-1500:]
    assert "no host switched" in text
    # Pages on other tables kept answering while the migration waited.
    assert probes.answered > 20 and not probes.failures, probes.failures[:5]
    run = run_report(tmp_path / "report.json")
    assert run["outcome"] == "failed" and "could not lock hello_hit" in run["failure"]
    assert {host_release(host) for host in app_hosts.values()} == {"v6"}
    assert "flag" not in hit_columns()
    assert_unlocked(app_hosts)
    print(f"the locked rollout ended after {seconds:.1f} s")
