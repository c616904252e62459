"""This version against the one before the rollout speed work, side by side on the same lab.

Run by bench/run-versions. For each version, one after the other, on fresh containers (the load
balancer and 3 app hosts, bench/bench.py's lab) with an empty controller cache: a cold deploy, a
no-change re-run, then a new release rolled out under the same load as bench/bench.py's rollouts
(after 20 s of steady load). Writes bench/versions.json and bench/VERSIONS.md.

The earlier version is commit 227a260, main when that work began (named ``speed-baseline`` in the
results), checked out as a worktree under .cache/bench/ and run as the collection from there. It is
named by its commit: a tag does not travel with a clone of main.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path

from measure import steady_state, under_load

import lab
from lab import ROOT, WORK, Json, log

HOSTS = 3
# main before the rollout speed work, and the name its figures go by.
BASELINE_COMMIT = "227a260"
BASELINE_TAG = "speed-baseline"


def worktree(tag: str, commit: str) -> Path:
    """The earlier version checked out beside the lab's files, with its own collections path."""
    tree = WORK / f"tree-{tag}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True)
    link = WORK / f"collections-{tag}" / "ansible_collections" / "django_asgi" / "rollout"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(tree)
    return tree


def per_app_host(run: Json, what: str) -> float:
    values = [figures[what] for host, figures in run["recap"].items() if host.startswith("app")]
    return round(sum(values) / len(values), 1)


def module_runs_per_app_host(run: Json) -> float | None:
    """Mean module runs on an app host (bench/callback_plugins/module_runs.py); None where not counted."""
    values = [runs for host, runs in run.get("module_runs", {}).items() if "app" in host]
    return round(sum(values) / len(values), 1) if values else None


def measure(label: str, tree: Path, collections: Path) -> Json:
    log(f"{label}: fresh containers, empty controller cache")
    lab.lab_down()
    lab.lab_up(HOSTS)
    inventory = lab.write_inventory(HOSTS)
    shutil.rmtree(WORK / "controller-cache", ignore_errors=True)
    environment = {"ANSIBLE_COLLECTIONS_PATH": str(collections)}

    def site(release: str) -> Json:
        return lab.site(inventory, "-e", f"django_app_release_id={release}", environment=environment, tree=tree)

    cold = site("r1")
    log(f"  cold {cold['seconds']} s, changed={cold['changed']}")
    unchanged = site("r1")
    log(f"  no-change {unchanged['seconds']} s, changed={unchanged['changed']}")
    steady = steady_state()
    rollout = under_load(f"{label}: new release under load", lambda: site("r2"))
    return {
        "version": label,
        "cold": cold,
        "no_change": unchanged,
        "steady": steady,
        "rollout": rollout,
        "tasks_per_app_host": {
            "cold": per_app_host(cold, "ok"),
            "no_change": per_app_host(unchanged, "ok"),
        },
    }


def ratio(part: float, whole: float) -> float:
    return round(part / whole, 2) if whole else 0.0


def report(results: Json) -> str:
    before, now = results["runs"]
    tag, commit = (
        results.get("baseline", {}).get("tag", BASELINE_TAG),
        results.get("baseline", {}).get("commit", BASELINE_COMMIT),
    )
    speed_work = tag == BASELINE_TAG
    command = results.get("command", "bench/run-versions")
    lines = [
        "# This version against the one before the speed work" if speed_work else f"# This version against {tag}",
        "",
        f"Written by `{command}` on {results['machine']['date']}, commit `{results['machine']['commit']}`, "
        f"against `{tag}`, commit `{commit}`; {results['machine']['cpus']} CPUs shared by the "
        f"controller, the lab's {HOSTS} app hosts and load balancer, and the load. Each version on fresh containers "
        "with an empty controller cache, one after the other, the same load (bench/bench.py's mix) during the new "
        "release.",
        "",
        "| version | cold s | no-change s | no-change changed | new release under load s | failed / sent "
        "| p99 steady ms | p99 rollout ms | p99 ratio | task results per app host, cold / no-change "
        "| module runs per app host, cold / no-change / new release | controller CPU s, no-change |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in (before, now):
        rollout, steady = run["rollout"], run["steady"]
        lines.append(
            f"| {run['version']} | {run['cold']['seconds']} | {run['no_change']['seconds']} "
            f"| {run['no_change']['changed']} | {rollout['playbook_seconds']} "
            f"| {rollout['failed']} / {rollout['sent']} "
            f"| {steady['p99_ms']} | {rollout['p99_ms']} | {ratio(rollout['p99_ms'], steady['p99_ms'])} "
            f"| {run['tasks_per_app_host']['cold']} / {run['tasks_per_app_host']['no_change']} "
            f"| {' / '.join(str(module_runs_per_app_host(part)) for part in (run['cold'], run['no_change'], rollout))} "
            f"| {run['no_change']['controller_cpu_seconds']} |"
        )
    if not speed_work:
        lines.append("")
        return "\n".join(lines)
    lines += [
        "",
        "| target (issue: rollouts at the speed of the hardware) | measured | verdict |",
        "|---|---|---|",
    ]
    rollout_ratio = ratio(now["rollout"]["playbook_seconds"], before["rollout"]["playbook_seconds"])
    unchanged_ratio = ratio(now["no_change"]["seconds"], before["no_change"]["seconds"])
    unchanged_cold = ratio(now["no_change"]["seconds"], now["cold"]["seconds"])
    p99 = ratio(now["rollout"]["p99_ms"], now["steady"]["p99_ms"])
    failed, changed = now["rollout"]["failed"], now["no_change"]["changed"]
    targets = [
        ("new release under load at most 0.25x the earlier version's, zero failed",
         f"{rollout_ratio}x, {failed} failed", rollout_ratio <= 0.25 and not failed),
        ("no-change at most 0.2x the earlier version's", f"{unchanged_ratio}x", unchanged_ratio <= 0.2),
        ("no-change at most 0.15x a cold deploy, zero changes",
         f"{unchanged_cold}x, changed={changed}", unchanged_cold <= 0.15 and not changed),
        ("p99 during the rollout at most 2x steady (uvicorn)", f"{p99}x", p99 <= 2),
    ]  # fmt: skip
    lines += [f"| {what} | {measured} | {'met' if met else '**missed**'} |" for what, measured, met in targets]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "versions.json")
    parser.add_argument("--report-only", action="store_true", help="write VERSIONS.md from the last results")
    parser.add_argument(
        "--baseline",
        metavar="COMMIT:TAG",
        default=f"{BASELINE_COMMIT}:{BASELINE_TAG}",
        help="the earlier version (default: the one before the speed work)",
    )
    parser.add_argument("--markdown", type=Path, default=ROOT / "bench" / "VERSIONS.md")
    options = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if not options.report_only:
        began = time.perf_counter()
        commit, tag = options.baseline.split(":", 1)
        command = "bench/run-versions" + ("" if tag == BASELINE_TAG else f" --baseline {options.baseline}")
        results: Json = {
            "command": command,
            "machine": lab.machine(),
            "runs": [],
            "baseline": {"commit": commit, "tag": tag},
        }
        try:
            baseline = worktree(tag, commit)
            results["runs"].append(measure(tag, baseline, WORK / f"collections-{tag}"))
            results["runs"].append(measure("this version", ROOT, ROOT / ".cache" / "collections"))
        finally:
            results["bench_seconds"] = round(time.perf_counter() - began)
            options.output.write_text(json.dumps(results, indent=1) + "\n")
            log(f"wrote {options.output}")
            lab.lab_down()
            subprocess.run(["git", "worktree", "remove", "--force", str(WORK / f"tree-{tag}")], cwd=ROOT, check=False)
    results = json.loads(options.output.read_text())
    options.markdown.write_text(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
