"""Migrations during a rollout: a two-phase release beside a one-phase one, under write load.

On the embedded lab (lab/up.sh: the load balancer, app1-app3 running uvicorn, daphne and hypercorn,
and the PostgreSQL and Redis host; inventories/lab; lab/database.yml), fresh, one run after the other:

- m1: the demo (examples/demo), a first deploy, no load;
- m2, one phase: m1 plus a migration that adds a nullable column (``Hit.tag``) and a table;
- m3 refused: m2 plus a migration that drops ``Hit.note``, which m2 writes on every POST /db (m3's
  code no longer does), with ``rollout_migrations`` unset: the run must stop before any host switches;
- m3, two phases: the same release with ``-e rollout_migrations=two_phase``.

m2 and both m3 runs go under the same write-heavy load through the load balancer's port on 127.0.0.1
(tests/load/loadgen.py: GETs, /slow, two POST /db workers, WebSocket sessions). For each run: wall
seconds, requests sent and failed by kind, and the time of each phase. The phases come from the
plays' timeline that bench/callback_plugins/module_runs.py records (each play's start, the batches of
the serial play each a play of their own): *build* from the first play to the migrate play (checks,
lock, load balancer, build, and the maintenance play, on no host here), *migrations before the
switch* that play, *switch* from there to the second migrate play (every batch), *migrations after
the switch* that play, *report* the rest. The seconds of each migration and each batch's elapsed time
come from the run's JSON report (``rollout_report``).

The collection runs from a copy of the commit checked out (``git archive HEAD``), not from the work
tree, so uncommitted changes do not mix into the figures. Writes bench/migrations.json, which
bench/report.py turns into a section of bench/RESULTS.md. About 12 minutes on 2 CPUs:

    .venv/bin/python bench/migrations.py [--keep]

--keep leaves the lab running (lab/down.sh removes it); each run's output is in
.cache/bench/migrations-RUN.log, its report in .cache/bench/migrations-RUN-report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path
import measure
import scale
from measure import LoadConfig, LoadRun  # the load generator, as the measurements import it

import lab
from lab import ROOT, WORK, Json, log

LAB_HOSTS = ROOT / "lab" / "hosts.sh"  # the embedded lab: container names django-asgi-lab-*
INVENTORY = ROOT / "inventories" / "lab" / "hosts.yml"
LB_URL = "http://127.0.0.1:8080"  # the lab's load balancer, published on the loopback
DATABASE = "django-asgi-lab-db"
FIRST_APP_HOST = "app1"  # the host that migrates (the first app host)
TREE = WORK / "migrations-tree"
COLLECTIONS = WORK / "migrations-collections"
SOURCES = WORK / "migrations-sources"

MIGRATE_BEFORE = "Migrate the database, before any host switches"
CONVERGE = "Converge the app hosts that serve nothing they would cut, all at once"
MIGRATE_AFTER = "Migrate what waited until every app host serves the new release"
# From the first play to the end, in this order; each phase ends where the next starts.
PHASES = (
    ("build", None),
    ("migrate_before_switch", MIGRATE_BEFORE),
    ("switch", CONVERGE),
    ("migrate_after_switch", MIGRATE_AFTER),
    ("report", "Roll the hosts already done back, when a later batch failed or the canary stopped the release"),
)

MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("hello", "{previous}")]
    operations = [
        {operations}
    ]
"""


# --- the releases ---------------------------------------------------------------------------------


def release(name: str, previous: Path, migration: str, depends_on: str, operations: str) -> Path:
    """The previous release's source plus one migration (as molecule/rolling/tests/test_schema.py builds them)."""
    source = SOURCES / name / "demo"
    shutil.copytree(previous, source, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    text = MIGRATION.format(previous=depends_on, operations=operations)
    (source / "hello" / "migrations" / f"{migration}.py").write_text(text)
    return source


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise RuntimeError(f"{path} no longer holds {old!r}: the demo changed, and so must m3")
    path.write_text(text.replace(old, new))


def sources() -> dict[str, Path]:
    """m1 (the demo), m2 (an additive migration), m3 (drops the column m2 writes, and stops writing it)."""
    shutil.rmtree(SOURCES, ignore_errors=True)
    m1 = SOURCES / "m1" / "demo"
    shutil.copytree(TREE / "examples" / "demo", m1, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    m2 = release(
        "m2",
        m1,
        "0003_hit_tag_label",
        "0002_job_tick",
        'migrations.AddField("hit", "tag", models.CharField(max_length=20, null=True)),\n'
        '        migrations.CreateModel(name="Label", fields=[("id", models.BigAutoField(primary_key=True))]),',
    )
    m3 = release("m3", m2, "0004_remove_hit_note", "0003_hit_tag_label", 'migrations.RemoveField("hit", "note"),')
    replace(m3 / "hello" / "models.py", "    note = models.CharField(max_length=200, blank=True)\n", "")
    replace(m3 / "hello" / "views.py", "Hit.objects.create(note=note)", "Hit.objects.create()")
    return {"m1": m1, "m2": m2, "m3": m3}


def snapshot() -> str:
    """The commit checked out, copied to TREE and linked as the collection; returns its short hash."""
    shutil.rmtree(TREE, ignore_errors=True)
    TREE.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(TREE)], input=archive, check=True)
    link = COLLECTIONS / "ansible_collections" / "django_asgi" / "rollout"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(TREE)
    return lab.run("git", "rev-parse", "--short", "HEAD").strip()


# --- the lab --------------------------------------------------------------------------------------


def lab_script(action: str) -> None:
    lab.run(f"lab/{action}.sh", env=os.environ | {"LAB_CONFIG": str(LAB_HOSTS)})


def playbook(*extra: str, name: str = "site.yml", check: bool = True) -> Json:
    return lab.site(
        INVENTORY,
        *extra,
        environment={"ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS)},
        playbook=name,
        tree=TREE,
        check=check,
    )


def hit_columns() -> list[str]:
    query = "SELECT column_name FROM information_schema.columns WHERE table_name = 'hello_hit' ORDER BY column_name"
    command = ("docker", "exec", DATABASE, "runuser", "-u", "postgres", "--", "psql", "-d", "demo", "-tAc", query)
    return lab.run(*command).split()


def other_containers() -> list[str]:
    """The containers running on the machine that are not the lab's (the molecule scenarios', say)."""
    names = lab.run("docker", "ps", "--format", "{{.Names}}").split()
    return [name for name in names if not name.startswith("django-asgi-lab-")]


# --- one run --------------------------------------------------------------------------------------


def write_load() -> LoadConfig:
    """The rolling scenario's schema tests' mix: fewer GET workers, two POST /db workers writing Hit.note."""
    return LoadConfig(
        base_url=LB_URL,
        duration=measure.LOAD_BOUND_SECONDS,
        max_requests=measure.LOAD_BOUND_REQUESTS,
        http_workers=2,
        post_workers=2,
        request_interval=0.01,
        websocket_session_seconds=15,
    )


def play_start(plays: list[Json], name: str) -> int:
    for index, play in enumerate(plays):
        if play["name"] == name:
            return index
    raise RuntimeError(f"no play named {name!r} in the run: site.yml's plays changed, and so must PHASES")


def phases(plays: list[Json]) -> Json:
    """Seconds of each phase, from the plays' timeline: each phase ends where the next one's play starts."""
    starts = [0] + [play_start(plays, name) for _phase, name in PHASES[1:] if name]
    bounds = [plays[index]["wall"] for index in starts] + [plays[-1]["wall"]]  # the last entry is "end"
    return {phase: round(bounds[number + 1] - bounds[number], 1) for number, (phase, _name) in enumerate(PHASES)}


def applied(entries: list[Json]) -> Json:
    return {
        "migrations": entries,
        "seconds": round(sum(entry["seconds"] for entry in entries), 2),
    }


def measured(label: str, release_id: str, source: Path, *extra: str, load: bool = True) -> Json:
    """site.yml to one release (under the write load unless load is false): its figures and its phases."""
    report_path = WORK / f"migrations-{label}-report.json"
    report_path.unlink(missing_ok=True)
    arguments = ("-e", f"django_app_source={source}", "-e", f"django_app_release_id={release_id}", *extra)
    log(f"{label}: site.yml {' '.join(extra) or '(no extra arguments)'}{', under write load' if load else ''}")
    neighbours = other_containers()
    began = time.perf_counter()
    if load:
        with LoadRun(write_load()) as running:
            run = playbook(*arguments, "-e", f"rollout_report={report_path}", check=False)
            figures = running.stop()
        traffic: Json | None = measure.load_figures(figures, time.perf_counter() - began)
    else:
        run = playbook(*arguments, "-e", f"rollout_report={report_path}", check=False)
        traffic = None
    shutil.copy(WORK / "last-playbook.log", WORK / f"migrations-{label}.log")
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    migrations = report.get("hosts", {}).get(FIRST_APP_HOST, {}).get("migrations") or {}
    plays = run["plays"]
    result: Json = {
        "release": release_id,
        "arguments": " ".join(extra),
        "exit_code": run["returncode"],
        "outcome": report.get("outcome"),
        "failure": report.get("failure"),
        "seconds": run["seconds"],
        "report_seconds": report.get("seconds"),
        "changed": run["changed"],
        # Outside the plays: ansible-playbook starting, reading the inventory, and exiting.
        "startup_seconds": round(run["seconds"] - (plays[-1]["wall"] - plays[0]["wall"]), 1) if plays else None,
        "phases": phases(plays) if plays else {},
        "migrations_before_switch": applied(migrations.get("before_switch", [])),
        "migrations_after_switch": applied(migrations.get("after_switch", [])),
        "made_nullable": migrations.get("made_nullable", []),
        "waiting_for_after_switch": migrations.get("waiting_for_after_switch", []),
        "batches": [
            {**timed, "elapsed_seconds": batch["elapsed_seconds"]}
            for timed, batch in zip(scale.batches(plays, report), report.get("batches", []), strict=False)
        ],
        "hosts": {
            name: {"outcome": host["outcome"], "release": host.get("release")}
            for name, host in report.get("hosts", {}).items()
        },
        "hit_columns_after": hit_columns(),
        # The machine is shared: what else ran beside the lab, and the load average when the run ended.
        "other_containers": sorted(set(neighbours) | set(other_containers())),
        "load_average_1_5_15": [round(value, 1) for value in os.getloadavg()],
    }
    if result["phases"] and result["startup_seconds"] is not None:
        # When the run knew its outcome before any host switched: the end of the first migrate play.
        result["until_switch_seconds"] = round(
            result["startup_seconds"] + result["phases"]["build"] + result["phases"]["migrate_before_switch"], 1
        )
    if traffic is not None:
        result["load"] = traffic
        log(
            f"  {label}: exit {run['returncode']}, {run['seconds']} s; {traffic['sent']} sent, "
            f"{traffic['failed']} failed ({traffic['by_kind']}); phases {result['phases']}"
        )
    else:
        log(f"  {label}: exit {run['returncode']}, {run['seconds']} s")
    return result


def expect(condition: bool, what: str, run: Json) -> None:
    """A run that did not do what the bench measures makes its figures meaningless: stop, saying so."""
    if not condition:
        raise RuntimeError(f"{run['release']} {run['arguments']}: {what}; see {WORK}/migrations-*.log")


# --- the bench ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "migrations.json")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    options = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    results: Json = {
        "command": ".venv/bin/python bench/migrations.py",
        "machine": lab.machine(),
        "lab": "embedded lab (lab/up.sh, inventories/lab): load balancer, app1 uvicorn, app2 daphne, "
        "app3 hypercorn, PostgreSQL and Redis on db; SSH as the deploy user",
        "load": {
            key: getattr(write_load(), key)
            for key in ("http_workers", "slow_workers", "post_workers", "websocket_sessions", "request_interval")
        },
        "timeline": "plays' starts from bench/callback_plugins/module_runs.py; migrations and batches from "
        "the run's JSON report",
        "runs": {},
    }
    began = time.perf_counter()
    try:
        results["collection_commit"] = snapshot()
        releases = sources()
        log("the embedded lab, fresh, with its database")
        lab_script("down")
        lab_script("up")
        playbook(name="lab/database.yml")
        runs = results["runs"]
        runs["m1_first_deploy"] = measured("m1_first_deploy", "m1", releases["m1"], load=False)
        expect(runs["m1_first_deploy"]["exit_code"] == 0, "the first deploy failed", runs["m1_first_deploy"])
        one_phase = runs["m2_one_phase"] = measured("m2_one_phase", "m2", releases["m2"])
        expect(one_phase["exit_code"] == 0 and "tag" in one_phase["hit_columns_after"], "m2 did not roll", one_phase)
        refused = runs["m3_refused"] = measured("m3_refused", "m3", releases["m3"])
        expect(
            refused["exit_code"] != 0
            and "note" in refused["hit_columns_after"]
            and not any(host["outcome"] == "switched" for host in refused["hosts"].values()),
            "m3 was not refused before any switch",
            refused,
        )
        two_phase = runs["m3_two_phase"] = measured(
            "m3_two_phase", "m3", releases["m3"], "-e", "rollout_migrations=two_phase"
        )
        expect(
            two_phase["exit_code"] == 0 and "note" not in two_phase["hit_columns_after"],
            "m3 did not roll in two phases",
            two_phase,
        )
    finally:
        results["bench_seconds"] = round(time.perf_counter() - began)
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {options.output}")
        if not options.keep:
            lab_script("down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
