"""What a canary window adds to a rollout: three good releases, no window, the first batch's, every batch's.

On the embedded lab (lab/up.sh, inventories/lab, lab/database.yml), fresh, one run after the other,
as bench/migrations.py brings it up and measures (its helpers, imported):

- c1: the demo (examples/demo), a first deploy, no load;
- c2, c3, c4: code-only releases (a comment added to the demo's views, no migration), rolled out
  with ``-e rollout_canary_seconds=0``, ``=30`` (the first batch watched), and
  ``=30 -e rollout_canary_batches=every`` (each batch watched).

c2-c4 go under the same load through the load balancer's port on 127.0.0.1 (bench/migrations.py's
write load: GETs, two POST /db workers, WebSocket sessions). For each run: wall seconds, the phases
of the plays' timeline (the window sits in *switch*), each batch's seconds and its canary figures
from the run's JSON report (``batches[].canary``), and requests sent and failed.

Writes bench/canary.json, which bench/report.py turns into a section of bench/RESULTS.md. About 15
minutes on 2 CPUs:

    .venv/bin/python bench/canary.py [--keep]

--keep leaves the lab running (lab/down.sh removes it); each run's output is in
.cache/bench/migrations-canary-RUN.log, its report in .cache/bench/migrations-canary-RUN-report.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path
import migrations

import lab
from lab import ROOT, WORK, Json, log

SOURCES = WORK / "canary-sources"
WINDOW = 30
# The rollouts after c1, in order: (run, release, extra arguments).
ROLLOUTS = (
    ("c2_no_window", "c2", ("-e", "rollout_canary_seconds=0")),
    ("c3_first_batch", "c3", ("-e", f"rollout_canary_seconds={WINDOW}")),
    ("c4_every_batch", "c4", ("-e", f"rollout_canary_seconds={WINDOW}", "-e", "rollout_canary_batches=every")),
)


def sources() -> dict[str, Path]:
    """c1 (the demo) and c2-c4: the demo with a comment naming the release in its views (code only)."""
    shutil.rmtree(SOURCES, ignore_errors=True)
    made = {}
    for release in ("c1", *(release for _run, release, _extra in ROLLOUTS)):
        source = made[release] = SOURCES / release / "demo"
        shutil.copytree(
            migrations.TREE / "examples" / "demo", source, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3")
        )
        if release != "c1":
            views = source / "hello" / "views.py"
            views.write_text(views.read_text() + f"\n# Release {release}: a code-only change (bench/canary.py).\n")
    return made


def canaries(label: str) -> list[Json | None]:
    """Each batch's canary from the run's JSON report, in order (None: no window after that batch)."""
    path = WORK / f"migrations-{label}-report.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    return [batch.get("canary") for batch in report.get("batches", [])]


def measured(label: str, release: str, source: Path, *extra: str, load: bool = True) -> Json:
    """bench/migrations.py's run, with each batch's canary from the report beside its seconds."""
    result = migrations.measured(label, release, source, *extra, load=load)
    for batch, canary in zip(result["batches"], canaries(label), strict=False):
        batch["canary"] = canary
    windows = [batch["canary"]["seconds"] for batch in result["batches"] if batch.get("canary")]
    result["canary_windows"] = len(windows)
    result["canary_window_seconds"] = sum(windows)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "canary.json")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    options = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    load = migrations.write_load()
    results: Json = {
        "command": ".venv/bin/python bench/canary.py",
        "machine": lab.machine(),
        "lab": "embedded lab (lab/up.sh, inventories/lab): load balancer, app1 uvicorn, app2 daphne, "
        "app3 hypercorn, PostgreSQL and Redis on db; SSH as the deploy user; one app host a batch",
        "load": {
            key: getattr(load, key)
            for key in ("http_workers", "slow_workers", "post_workers", "websocket_sessions", "request_interval")
        },
        "window_seconds": WINDOW,
        "timeline": "plays' starts from bench/callback_plugins/module_runs.py; batches and their canaries from "
        "the run's JSON report",
        "runs": {},
    }
    began = time.perf_counter()
    try:
        results["collection_commit"] = migrations.snapshot()
        releases = sources()
        log("the embedded lab, fresh, with its database")
        migrations.lab_script("down")
        migrations.lab_script("up")
        migrations.playbook(name="lab/database.yml")
        runs = results["runs"]
        first = runs["c1_first_deploy"] = measured("canary-c1", "c1", releases["c1"], load=False)
        migrations.expect(first["exit_code"] == 0, "the first deploy failed", first)
        for run, release, extra in ROLLOUTS:
            runs[run] = measured(f"canary-{release}", release, releases[release], *extra)
            verdicts = [batch["canary"] and batch["canary"]["verdict"] for batch in runs[run]["batches"]]
            log(f"  {run}: canary verdicts by batch {verdicts}")
    finally:
        results["bench_seconds"] = round(time.perf_counter() - began)
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {options.output}")
        if not options.keep:
            migrations.lab_script("down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
