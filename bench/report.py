"""Write bench/RESULTS.md and bench/results.png from bench/results.json (written by bench/bench.py).

Sections 5, 6, 7 and 8 come from bench/scale.json, bench/migrations.json, bench/canary.json and
bench/chaos.json (bench/scale.py, bench/migrations.py, bench/canary.py, bench/chaos.py) when they exist.

The figures and the verdicts against the targets come from the JSON alone; bench/notes.md, written by
hand, explains the causes behind them and is copied in at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen here
import matplotlib.pyplot as plt  # after use(): the backend is chosen first

HERE = Path(__file__).resolve().parent
Json = dict[str, Any]

TARGET_P99_RATIO = 2.0
# The targets of the speed issue ("Rollouts at the speed of the hardware").
TARGET_RERUN_RATIO = 0.15
TARGET_SCALE_RATIO = 1.5
TARGET_PROXIED_RATIO = 0.85
# The fleets issue: a batch costs the same whatever the fleet's size.
TARGET_BATCH_RATIO = 1.25
SCALE_RUNS = (
    ("cold", "cold deploy"),
    ("rerun", "no change"),
    ("rollout_count", "rollout, `rollout_serial=1`"),
    ("rollout_share", "rollout, `rollout_serial=25%`"),
)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")  # shown rounded, compared exact


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def by_hosts(entries: list[Json]) -> dict[int, Json]:
    """Deploy figures by fleet size; a run that failed is left out (its error is printed apart)."""
    return {entry["hosts"]: entry for entry in entries if "error" not in entry}


def headline(results: Json) -> list[tuple[str, str, str, bool]]:
    """(target, what was measured, the ratio or count, met) for every target of the issue."""
    rows = []
    for entry in results["rollouts"]:
        server, rollout, tutorial = entry["server"], entry["rollout"], entry["tutorial_restart"]
        rows.append(
            (
                f"{server}: zero failed requests during the rollout, against a baseline that fails",
                f"rollout {rollout['failed']} of {rollout['sent']}; `systemctl restart` {tutorial['failed']} "
                f"of {tutorial['sent']}",
                f"{rollout['failed']} vs {tutorial['failed']}",
                rollout["failed"] == 0 and tutorial["failed"] > 0,
            )
        )
        p99 = ratio(rollout["p99_ms"], entry["steady"]["p99_ms"])
        rows.append(
            (
                f"{server}: p99 during the rollout at most {TARGET_P99_RATIO:g}x steady",
                f"{rollout['p99_ms']:.1f} ms vs {entry['steady']['p99_ms']:.1f} ms",
                f"{p99:.2f}x",
                p99 <= TARGET_P99_RATIO,
            )
        )
    for runner, entries in (("", results["deploy"]), (" (Mitogen)", results.get("deploy_mitogen", []))):
        deploys = by_hosts(entries)
        for hosts, entry in sorted(deploys.items()):
            rerun = ratio(entry["rerun"]["seconds"], entry["cold"]["seconds"])
            rows.append(
                (
                    f"{hosts} app host(s){runner}: no-change re-run at most {TARGET_RERUN_RATIO:g}x cold, zero changes",
                    f"{entry['rerun']['seconds']:.0f} s vs {entry['cold']['seconds']:.0f} s, "
                    f"changed={entry['rerun']['changed']}",
                    f"{rerun:.2f}x",
                    rerun <= TARGET_RERUN_RATIO and entry["rerun"]["changed"] == 0,
                )
            )
        if 1 in deploys and 6 in deploys:
            for kind, label in (("cold", "cold deploy"), ("rerun", "re-run")):
                scale = ratio(deploys[6][kind]["seconds"], deploys[1][kind]["seconds"])
                rows.append(
                    (
                        f"6 app hosts at most {TARGET_SCALE_RATIO:g}x one host{runner} ({label})",
                        f"{deploys[6][kind]['seconds']:.0f} s vs {deploys[1][kind]['seconds']:.0f} s",
                        f"{scale:.2f}x",
                        scale <= TARGET_SCALE_RATIO,
                    )
                )
    for entry in results["throughput"]:
        proxied = ratio(entry["proxied"]["requests_per_second"], entry["direct"]["requests_per_second"])
        rows.append(
            (
                f"{entry['server']}: through nginx at least {TARGET_PROXIED_RATIO:g}x the server alone",
                f"{entry['proxied']['requests_per_second']:.0f} vs {entry['direct']['requests_per_second']:.0f} req/s",
                f"{proxied:.2f}x",
                proxied >= TARGET_PROXIED_RATIO,
            )
        )
    return rows


def scale_rows(scale: Json) -> list[tuple[str, str, str, bool]]:
    """The fleets target: a batch of one host costs at most TARGET_BATCH_RATIO its cost in the smallest fleet."""
    fleets = sorted(scale["fleets"], key=lambda fleet: fleet["hosts"])
    if len(fleets) < 2:
        return []
    small, rows = fleets[0], []
    for fleet in fleets[1:]:
        for key, what in (("batch_seconds_median", "wall"), ("batch_controller_cpu_median", "controller CPU")):
            mine, base = fleet["rollout_count"][key], small["rollout_count"][key]
            rows.append(
                (
                    f"{fleet['hosts']} app hosts: a batch of one host at most {TARGET_BATCH_RATIO}x "
                    f"its cost with {small['hosts']} ({what})",
                    f"median {mine:.1f} s vs {base:.1f} s",
                    f"{ratio(mine, base):.2f}x",
                    ratio(mine, base) <= TARGET_BATCH_RATIO,
                )
            )
    return rows


def scale_section(scale: Json) -> list[str]:
    """bench/scale.py's figures: 3, 6 and 12 app hosts over SSH, each run's cost, per host and per batch."""
    machine = scale["machine"]
    out = [
        "",
        "## 5. Fleets: 3, 6 and 12 app hosts over SSH",
        "",
        f"`{scale['command']}` on {machine['date']}, commit `{machine['commit']}`, same machine: fresh containers "
        "for each fleet (the load balancer and N app hosts), reached as the lab reaches its hosts (SSH as the "
        "deploy user, sudo, pipelining, one connection per host kept open). *Controller CPU*: ansible-playbook "
        "and its workers (the ssh clients that keep the connections open are not its children, and not counted). "
        "*Busy*: the whole machine's CPU time over the run's wall time and the CPUs, so 1.00 is every CPU busy. "
        "*Batch*: from the start of a batch's play to the next play's, the median of the run's batches.",
        "",
        "| app hosts | run | seconds | s per app host | controller CPU s | per app host | hosts CPU s | busy "
        "| batches | median batch s | median batch controller CPU s | changed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fleet in sorted(scale["fleets"], key=lambda fleet: fleet["hosts"]):
        for key, label in SCALE_RUNS:
            run = fleet.get(key)
            if run is None:
                continue
            done = run.get("batches", [])
            out.append(
                f"| {fleet['hosts']} | {label} | {run['seconds']:.0f} | {run['seconds_per_app_host']:.1f} "
                f"| {run['controller_cpu_seconds']:.0f} | {run['controller_cpu_per_app_host']:.1f} "
                f"| {run['hosts_cpu_seconds']:.0f} | {run['machine_busy_share']:.2f} "
                f"| {len(done) if done else '-'} | {run.get('batch_seconds_median', '-')} "
                f"| {run.get('batch_controller_cpu_median', '-')} | {run['changed']} |"
            )
    return out


def p99_causes_section(causes: Json) -> list[str]:
    """bench/p99_causes.py's figures: the rollout's parts, each alone under the same load."""
    machine = causes["machine"]
    steady = causes["steady"]
    rows = [
        ("steady", "nothing runs", steady),
        ("no-change `site.yml`", "Ansible's tasks alone: nothing built, nothing switched", causes["no_change_run"]),
        (
            "`rollback.yml`",
            "the switch alone: previous colour started, probed, switched to; no build",
            causes["switch_alone"],
        ),
        ("`site.yml`, new release, Mitogen", "build and switch, with Mitogen's strategy", causes["rollout_mitogen"]),
    ]
    out = [
        "",
        f"Where the p99 comes from: `{causes['command']}` on {machine['date']}, commit `{machine['commit']}`, "
        f"same machine; {causes['server']} on {causes['hosts']} app hosts, the same load, each part of a rollout "
        "alone.",
        "",
        "| what runs | what that is | seconds | sent | failed | p50 ms | p99 ms | p99 / steady |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out += [
        f"| {label} | {what} | {figures['seconds']:.0f} | {figures['sent']} | {figures['failed']} "
        f"| {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} | {ratio(figures['p99_ms'], steady['p99_ms']):.2f} |"
        for label, what, figures in rows
    ]
    return out


MIGRATION_RUNS = (
    ("m1_first_deploy", "m1, first deploy (no load)"),
    ("m2_one_phase", "m2, one phase"),
    ("m3_refused", "m3, refused (default)"),
    ("m3_two_phase", "m3, two phases"),
)
MIGRATION_PHASES = (
    ("build", "build"),
    ("migrate_before_switch", "migrations before the switch"),
    ("switch", "switch"),
    ("migrate_after_switch", "migrations after the switch"),
    ("report", "report"),
)


def migrations_section(migrations: Json) -> list[str]:
    """bench/migrations.py's figures: a one-phase and a two-phase release under write load, and a refusal."""
    machine, load = migrations["machine"], migrations["load"]
    runs = migrations["runs"]
    out = [
        "",
        "## 6. Migrations during a rollout, under write load",
        "",
        f"`{migrations['command']}` on {machine['date']}, the collection at commit "
        f"`{migrations.get('collection_commit', machine['commit'])}` (a `git archive` of it), same machine, "
        f"{migrations['bench_seconds'] / 60:.0f} minutes: {migrations['lab']}. One run after the other on the "
        "same fresh lab: m1 is the demo; m2 adds a migration that adds a nullable column (`Hit.tag`) and a table; "
        "m3 adds one that removes `Hit.note`, which m2 writes on every POST `/db` and m3's code no longer does. "
        f"Load through the load balancer (`tests/load/loadgen.py`): {load['http_workers']} GET workers, "
        f"{load['slow_workers']} `/slow`, {load['post_workers']} POST `/db` writing `Hit.note`, "
        f"{load['websocket_sessions']} WebSocket sessions. Phases from the plays' timeline "
        "(`bench/callback_plugins/module_runs.py`): *build* from the first play to the migrate play (checks, "
        "lock, load balancer, build; the maintenance play, on no host here), *before* that play, *switch* every "
        "batch, *after* the play after the last batch, *report* the rest; *startup* is ansible-playbook outside "
        "its plays (starting, reading the inventory, exiting). Each migration's seconds and the batches come "
        "from the run's JSON report.",
        "",
        "| run | arguments | exit | outcome | seconds | sent | failed | by kind, sent/failed | answered by release |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in MIGRATION_RUNS:
        run = runs.get(key)
        if run is None:
            continue
        traffic = run.get("load")
        kinds = (
            ", ".join(f"{kind} {n['sent']}/{n['failed']}" for kind, n in sorted(traffic["by_kind"].items()))
            if traffic
            else "-"
        )
        releases = (
            ", ".join(f"{name} {count}" for name, count in sorted(traffic["releases_seen"].items())) if traffic else "-"
        )
        out.append(
            f"| {label} | `{run['arguments'] or '-'}` | {run['exit_code']} | {run['outcome']} | {run['seconds']:.1f} "
            f"| {traffic['sent'] if traffic else '-'} | {traffic['failed'] if traffic else '-'} | {kinds} "
            f"| {releases} |"
        )
    out += [
        "",
        "| run | startup s | " + " | ".join(f"{label} s" for _key, label in MIGRATION_PHASES) + " | batches s |",
        "|---|---|" + "---|" * len(MIGRATION_PHASES) + "---|",
    ]
    for key, label in MIGRATION_RUNS:
        run = runs.get(key)
        if run is None or not run["phases"]:
            continue
        batches = ", ".join(f"{'+'.join(batch['hosts'])} {batch['seconds']:.1f}" for batch in run["batches"]) or "-"
        out.append(
            f"| {label} | {run['startup_seconds']:.1f} | "
            + " | ".join(f"{run['phases'][phase]:.1f}" for phase, _label in MIGRATION_PHASES)
            + f" | {batches} |"
        )
    out += ["", "| run | phase | migration | seconds |", "|---|---|---|---|"]
    for key, label in MIGRATION_RUNS:
        run = runs.get(key)
        if run is None:
            continue
        for phase, when in (("migrations_before_switch", "before"), ("migrations_after_switch", "after")):
            out += [
                f"| {label} | {when} the switch | `{entry['migration']}` | {entry['seconds']:.3f} |"
                for entry in run[phase]["migrations"]
            ]
    shared = sorted({name for run in runs.values() for name in run.get("other_containers", [])})
    loads = [f"{run['load_average_1_5_15'][0]:g}" for run in runs.values() if "load_average_1_5_15" in run]
    if shared or loads:
        out += [
            "",
            f"The machine ({machine['cpus']} CPUs) was not the lab's alone: load average (1 min) at the end of each "
            f"run {', '.join(loads) or 'not recorded'}; other containers running meanwhile: "
            f"{', '.join(shared) or 'none'}. The seconds are this machine's on that day, not a rollout's cost alone.",
        ]
    refused, two_phase = runs.get("m3_refused"), runs.get("m3_two_phase")
    if refused:
        out += [
            "",
            f"m3 refused: the run knew at {refused.get('until_switch_seconds', 0):.1f} s that it would stop (the end "
            f"of the migrate play, no host switched) and exited {refused['exit_code']} after "
            f"{refused['seconds']:.1f} s; "
            f"`Hit` kept its columns ({', '.join(refused['hit_columns_after'])}). Its failure: "
            f"{(refused['failure'] or '').strip()}",
        ]
    if two_phase:
        out += [
            "",
            f"m3 in two phases: made nullable before the switch: {', '.join(two_phase['made_nullable']) or 'nothing'}; "
            f"`Hit`'s columns at the end: {', '.join(two_phase['hit_columns_after'])}.",
        ]
    return out


CANARY_RUNS = (
    ("c1_first_deploy", "c1, first deploy (no load)"),
    ("c2_no_window", "c2, no window"),
    ("c3_first_batch", "c3, first batch watched"),
    ("c4_every_batch", "c4, every batch watched"),
)


def window_figures(window: Json | None) -> str:
    if not window:
        return "-"
    return f"{'+'.join(window['hosts'])}: {window['requests']} req, {window['errors']} err, p95 {window['p95_ms']:g} ms"


def canary_section(canary: Json) -> list[str]:
    """bench/canary.py's figures: the same rollout with no canary window, the first batch's, every batch's."""
    machine, load, runs = canary["machine"], canary["load"], canary["runs"]
    out = [
        "",
        "## 7. What a canary window adds to a rollout",
        "",
        f"`{canary['command']}` on {machine['date']}, the collection at commit "
        f"`{canary.get('collection_commit', machine['commit'])}` (a `git archive` of it), same machine, "
        f"{canary['bench_seconds'] / 60:.0f} minutes: {canary['lab']}. One run after the other on the same fresh "
        "lab: c1 is the demo; c2, c3 and c4 each add a comment to its views (code only, no migration), rolled out "
        f"with no canary window, a {canary['window_seconds']} s window after the first batch, and one after every "
        f"batch. Load through the load balancer (`tests/load/loadgen.py`): {load['http_workers']} GET workers, "
        f"{load['slow_workers']} `/slow`, {load['post_workers']} POST `/db`, {load['websocket_sessions']} WebSocket "
        "sessions. *switch* is the plays' timeline from the first batch's play to the play after the last batch "
        "(the windows sit in it); each batch's seconds run from its play's start to the next play's; its canary "
        "comes from the run's JSON report (`batches[].canary`).",
        "",
        "| run | arguments | exit | outcome | seconds | switch s | windows | sent | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label in CANARY_RUNS:
        run = runs.get(key)
        if run is None:
            continue
        traffic = run.get("load")
        switch = run["phases"].get("switch")
        out.append(
            f"| {label} | `{run['arguments'] or '-'}` | {run['exit_code']} | {run['outcome']} | {run['seconds']:.1f} "
            f"| {f'{switch:.1f}' if switch is not None else '-'} | {run.get('canary_windows', 0)} "
            f"| {traffic['sent'] if traffic else '-'} | {traffic['failed'] if traffic else '-'} |"
        )
    out += [
        "",
        "| run | batch | seconds | window s | judged | verdict | canary | baseline (window) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label in CANARY_RUNS:
        run = runs.get(key)
        if run is None:
            continue
        for batch in run["batches"]:
            watched = batch.get("canary")
            if watched:
                baseline = watched.get("baseline") or {}
                out.append(
                    f"| {label} | {'+'.join(batch['hosts'])} | {batch['seconds']:.1f} | {watched['seconds']:g} "
                    f"| {'yes' if watched['judged'] else 'no'} | {watched['verdict']} "
                    f"| {window_figures(watched.get('canary'))} "
                    f"| {window_figures(baseline)} ({baseline.get('window', '-')}) |"
                )
            else:
                out.append(f"| {label} | {'+'.join(batch['hosts'])} | {batch['seconds']:.1f} | - | - | - | - | - |")
    none = runs.get("c2_no_window")
    if none:
        added = []
        for key, label in CANARY_RUNS[2:]:
            run = runs.get(key)
            if run is None or not run.get("canary_windows"):
                continue
            extra = run["seconds"] - none["seconds"]
            switch = run["phases"]["switch"] - none["phases"]["switch"]
            per_window = (switch - run["canary_window_seconds"]) / run["canary_windows"]
            added.append(
                f"{label}: {extra:+.1f} s of wall time, {switch:+.1f} s of *switch* for {run['canary_windows']} "
                f"window(s) of {run['canary_window_seconds'] / run['canary_windows']:g} s, that is "
                f"{per_window:+.1f} s a window beyond its own seconds"
            )
        if added:
            out += ["", "Against c2 (no window): " + "; ".join(added) + "."]
    rolled = [batch for key, _label in CANARY_RUNS[1:] if key in runs for batch in runs[key]["batches"]]
    watched = [batch["seconds"] for batch in rolled if batch.get("canary")]
    unwatched = [batch["seconds"] for batch in rolled if not batch.get("canary")]
    if watched and unwatched:
        out += [
            "",
            f"Batch by batch, c2-c4: a batch with a window took {sum(watched) / len(watched):.1f} s on average "
            f"({len(watched)} batches, {min(watched):.1f}-{max(watched):.1f} s), one without "
            f"{sum(unwatched) / len(unwatched):.1f} s ({len(unwatched)}, {min(unwatched):.1f}-{max(unwatched):.1f} s).",
        ]
    shared = sorted({name for run in runs.values() for name in run.get("other_containers", [])})
    loads = [f"{run['load_average_1_5_15'][0]:g}" for run in runs.values() if "load_average_1_5_15" in run]
    out += [
        "",
        f"The machine ({machine['cpus']} CPUs) was not the lab's alone: a CI run of the project's tests, from "
        f"another clone, shared it. Load average (1 min) at the end of each run {', '.join(loads) or 'not recorded'}; "
        f"other containers running at a run's start or end: {', '.join(shared) or 'none'}. The seconds are this "
        "machine's on that day, not a rollout's cost alone; the runs are side by side, so they share that noise.",
    ]
    return out


def chaos_section(chaos: Json) -> list[str]:
    """bench/chaos.py's campaign: runs, faults, failed requests and their window, re-run seconds, breaches."""
    machine, summary = chaos["machine"], chaos.get("summary", {"runs": 0, "by_fault": {}})
    covered = set(chaos["covered"])
    out = [
        "",
        "## 8. A fault campaign: a random fault at a random moment of each rollout",
        "",
        f"`{chaos['command']}` on {machine['date']}, at commit `{machine['commit']}`, {machine['cpus']} CPUs, "
        f"{chaos.get('campaign_seconds', 0) / 60:.0f} minutes: {chaos['lab']}. Each run rolls out a new release "
        "under load through the load balancer (load generator: "
        + ", ".join(f"{key} {value}" for key, value in chaos["load"].items())
        + "), injects one fault after a random number of the run's tasks or a random delay (both within what the "
        f"baseline rollout took: {chaos['baseline']['seconds']} s, {chaos['baseline']['tasks']} tasks), waits "
        "for the run to end, runs site.yml again to the same release, and checks the invariants (bench/chaos.py's "
        f"docstring). {summary['runs']} runs, {summary.get('runs_with_breaches', 0)} with a breach. Faults the design "
        "covers are marked *covered*: no GET may fail, and no WebSocket session or write but those a killed "
        "server or nginx held (a process killed -9 takes its connections with it, and the load balancer rightly "
        "does not send a write again); for the others the failed "
        "requests are recorded, with the window: the longest stretch of failures each within 2 s of the one before."
        + (f" {chaos['note']}" if chaos.get("note") else ""),
        "",
        "| fault | runs | breaches | failed requests (per run) | WebSocket sessions cut (per run) | worst window s "
        "| re-run s (median, max) |",
        "|---|---:|---:|---|---|---:|---|",
    ]
    for kind, entry in summary["by_fault"].items():
        label = f"{kind} (covered)" if kind in covered else kind
        if entry.get("not_injected"):
            label += f", {entry['not_injected']} not injected (the run ended first)"
        out.append(
            f"| {label} | {entry['runs']} | {entry['breaches']} | {', '.join(map(str, entry['failed_requests']))} "
            f"| {', '.join(map(str, entry.get('websocket_sessions_cut', [])))} | {entry['worst_window_seconds']} "
            f"| {entry['rerun_seconds_median']}, {entry['rerun_seconds_max']} |"
        )
    breaches = [run for run in chaos["runs"] if run.get("breaches_judged", run["breaches"])]
    if breaches:
        out += ["", "Breaches (replay: the command with `--only RUN`):", ""]
        out += [
            f"- run {run['run']} ({run['fault']}, injected at {run['injected_at_seconds']} s during "
            f"*{run['injected_during']}*): {'; '.join(run.get('breaches_judged', run['breaches']))[:400]}"
            for run in breaches
        ]
    # Runs the campaign flagged under the rule it ran with, which the summary's rule lets pass.
    recorded = [run for run in chaos["runs"] if run["breaches"] and not run.get("breaches_judged", run["breaches"])]
    if recorded:
        out += [
            "",
            "Flagged while the campaign ran, under its first rule (every failure of a covered fault a breach):",
            "",
        ]
        out += [
            f"- run {run['run']} ({run['fault']}): {'; '.join(run['breaches'])[:300]}; WebSocket sessions cut: "
            f"{run['load']['by_kind'].get('websocket', {}).get('failed', 0)}, writes failed: "
            f"{run['load']['by_kind'].get('post', {}).get('failed', 0)}, GETs failed: "
            f"{sum(c['failed'] for k, c in run['load']['by_kind'].items() if k in ('get', 'slow'))}"
            for run in recorded
        ]
    return out


def introduction(results: Json, chart_name: str) -> list[str]:
    """The title, the run and machine behind the figures, and the chart."""
    machine = results["machine"]
    return [
        "# Benchmarks",
        "",
        f"Written by `bench/report.py` from `bench/results.json`, which `{results['command']}` measured in one run "
        f"of {results['bench_seconds'] / 60:.0f} minutes on {machine['date']}, at commit `{machine['commit']}`.",
        "",
        f"Machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB; {machine['os']}, "
        f"kernel {machine['kernel']}; Docker {machine['docker']}; Python {machine['python']}; "
        f"{machine['ansible_core']}. The hosts are containers running systemd on this machine (`lab/up.sh`), "
        "so the controller, every host and the load generator share its CPUs; `ansible-playbook` runs under "
        "`nice -n 10` there, as a controller elsewhere would take nothing from them.",
        "",
        f"![The figures below, drawn]({chart_name})",
    ]


def targets_section(results: Json, scale: Json | None) -> list[str]:
    """Every target of the issue, what was measured and the verdict (the fleets' too, when measured)."""
    out = [
        "",
        "## Targets",
        "",
        "| target | measured | ratio | verdict |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {target} | {measured} | {value} | {verdict(met)} |"
        for target, measured, value, met in headline(results) + (scale_rows(scale) if scale else [])
    ]
    return out


def rollout_section(results: Json, causes: Json | None) -> list[str]:
    """Section 1: each server's rollout under load against `systemctl restart`, then the p99's causes."""
    out = [
        "",
        "## 1. Rollout under load, per server",
        "",
        "Load through the load balancer (`tests/load/loadgen.py`, the rolling scenario's mix: GET `/`, `/async`, "
        "`/whoami`, `/slow`, POST `/db`, WebSocket sessions of 15 s). Latency is of the fast GETs. *Steady*: "
        f"{results['rollouts'][0]['steady']['seconds']:.0f} s before anything changes. *Rollout*: `site.yml` with "
        "a new release over the 3 app hosts, one batch at a time. *`systemctl restart`*: the tutorial way, the "
        "same unit restarted host by host, each back in service before the next.",
        "",
        "| server | phase | seconds | sent | failed | p50 ms | p99 ms | p99 / steady |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["rollouts"]:
        steady = entry["steady"]
        for phase, label in (("steady", "steady"), ("rollout", "rollout"), ("tutorial_restart", "`systemctl restart`")):
            figures = entry[phase]
            out.append(
                f"| {entry['server']} | {label} | {figures['seconds']:.0f} | {figures['sent']} | {figures['failed']} "
                f"| {figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} "
                f"| {ratio(figures['p99_ms'], steady['p99_ms']):.2f} |"
            )
    failures = [
        f"- {entry['server']}, `systemctl restart`: {failure}"
        for entry in results["rollouts"]
        for failure in entry["tutorial_restart"]["failures"][:2]
    ]
    if failures:
        out += ["", "What the clients saw during the restarts (first failures):", "", *failures]
    if causes:
        out += p99_causes_section(causes)
    return out


def deploy_section(results: Json) -> list[str]:
    """Section 2: cold deploy and no-change re-run per fleet size and runner, then the wheelhouse."""
    scales: list[str] = []
    errors: list[str] = []
    out = [
        "",
        "## 2. Deploy time",
        "",
        "`site.yml` against fresh containers (the load balancer and N app hosts, nothing installed, an empty "
        "controller cache), then the same command again; once with plain Ansible (this repository's "
        "`ansible.cfg`: pipelining, forks 20, smart fact gathering), once more on new containers with Mitogen's "
        "strategy (`mitogen_linear`, see the README). Controller CPU is what `ansible-playbook` and its "
        "workers used.",
        "",
        "| runner | app hosts | cold s | changed | re-run s | changed | re-run / cold "
        "| controller CPU s, cold / re-run | per app host |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for runner, entries in (("Ansible", results["deploy"]), ("Mitogen", results.get("deploy_mitogen", []))):
        deploys = by_hosts(entries)
        for hosts, entry in sorted(deploys.items()):
            cold, rerun = entry["cold"], entry["rerun"]
            out.append(
                f"| {runner} | {hosts} | {cold['seconds']:.0f} | {cold['changed']} | {rerun['seconds']:.0f} "
                f"| {rerun['changed']} | {ratio(rerun['seconds'], cold['seconds']):.2f} "
                f"| {cold['controller_cpu_seconds']:.0f} / {rerun['controller_cpu_seconds']:.0f} "
                f"| {cold['controller_cpu_seconds'] / hosts:.1f} / {rerun['controller_cpu_seconds'] / hosts:.1f} |"
            )
        if 1 in deploys and 6 in deploys:
            scales.append(
                f"{runner}, 6 hosts / 1 host: cold "
                f"{ratio(deploys[6]['cold']['seconds'], deploys[1]['cold']['seconds']):.2f}x, re-run "
                f"{ratio(deploys[6]['rerun']['seconds'], deploys[1]['rerun']['seconds']):.2f}x."
            )
        errors += [
            f"{runner}, {entry['hosts']} host(s), failed: {entry['error'].strip().splitlines()[-1]}"
            for entry in entries
            if "error" in entry
        ]
    cost = results.get("task_cost_seconds")
    if cost:
        scales.append(
            f"One module run on one host, apart from its work (`bench/task-cost.yml`, {cost['runs']} runs of "
            f"`stat`): {cost['ansible']:.3f} s with Ansible, {cost['mitogen']:.3f} s with Mitogen."
        )
    out += ["", *[f"- {line}" for line in scales + errors]]
    return out + wheelhouse_lines(results.get("wheelhouse", {}))


def wheelhouse_lines(wheelhouse: Json) -> list[str]:
    """Section 2's last paragraph: the shipped wheelhouse against each host fetching its own."""
    if "error" in wheelhouse:
        return ["", f"The wheelhouse comparison did not run: {wheelhouse['error'].splitlines()[-1]}"]
    if not wheelhouse:
        return []
    hosts = wheelhouse["hosts"]
    shipped = wheelhouse["download_once_seconds"] + wheelhouse["wheelhouse_install_seconds"]
    per_host = wheelhouse["download_per_host_seconds"] + wheelhouse["wheelhouse_install_seconds"]
    source = (
        f" (measured by `{wheelhouse['command']}` on {wheelhouse['machine']['date']}, commit "
        f"`{wheelhouse['machine']['commit']}`, on a fleet of {hosts} just cold-deployed)"
        if "command" in wheelhouse
        else ""
    )
    return [
        "",
        f"Wheelhouse{source}: the release venv's {wheelhouse['packages']} packages for {hosts} hosts. The hosts "
        "here cannot reach the package index, so each host fetching its own wheels is measured as the same "
        f"`pip download` run {hosts} times at once: {wheelhouse['download_per_host_seconds']:.1f} s and "
        f"{wheelhouse['download_per_host_bytes'] / 2**20:.0f} MiB from the index, against "
        f"{wheelhouse['download_once_seconds']:.1f} s and {wheelhouse['download_once_bytes'] / 2**20:.0f} MiB "
        f"once. Installing on every host at once from the shipped wheelhouse takes "
        f"{wheelhouse['wheelhouse_install_seconds']:.1f} s either way, so shipping is {shipped:.1f} s against "
        f"{per_host:.1f} s ({ratio(shipped, per_host):.2f}x), {hosts}x less traffic to the index, and no host "
        "needs to reach it. (Shipping the archive to the hosts is part of the cold deploy above.)",
    ]


def throughput_section(results: Json) -> list[str]:
    """Section 3: requests/s through nginx, of the server alone and of the tutorial configuration; then the
    worker processes, and which rows a partial run measured."""
    tutorial = results.get("tutorial_throughput")
    out = [
        "",
        "## 3. Served throughput on one app host",
        "",
        f"`wrk -t2 -c32 -d10s` (after a 3 s warm-up) inside the host against its own loopback, `GET /whoami`. "
        "*Through nginx*: the site this collection writes, to the serving colour's unix socket. *Server alone*: "
        "the serving colour's own command line, on TCP, no nginx (the ceiling). *Tutorial*: "
        f"`{tutorial['command'] if tutorial else 'not measured'}` behind a site with a plain "
        "`proxy_pass http://127.0.0.1:8000` (HTTP/1.0, no upstream keepalive).",
        "",
        "| server | through nginx req/s | p99 ms | server alone req/s | p99 ms | nginx / alone "
        "| alone with nginx's headers req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in results["throughput"]:
        proxied, direct = entry["proxied"], entry["direct"]
        with_headers = entry.get("direct_with_proxy_headers")
        headers_figure = f"{with_headers['requests_per_second']:.0f}" if with_headers else "not measured"
        out.append(
            f"| {entry['server']} | {proxied['requests_per_second']:.0f} | {proxied['p99_ms']:.1f} "
            f"| {direct['requests_per_second']:.0f} | {direct['p99_ms']:.1f} "
            f"| {ratio(proxied['requests_per_second'], direct['requests_per_second']):.2f} | {headers_figure} |"
        )
    uvicorn = next((entry for entry in results["throughput"] if entry["server"] == "uvicorn"), None)
    if tutorial and uvicorn:
        out += [
            "",
            f"Tutorial configuration: {tutorial['requests_per_second']:.0f} req/s, p99 {tutorial['p99_ms']:.1f} ms; "
            f"this collection's uvicorn through nginx is "
            f"{ratio(uvicorn['proxied']['requests_per_second'], tutorial['requests_per_second']):.2f}x its throughput.",
        ]
    out += workers_section(results.get("workers", []))
    for key, rows, lab in (
        ("workers_run", "in this table", "one-host lab"),
        ("servers_run", "in sections 3, 4 and in the rollouts", "3-host fleet"),
    ):
        partial = results.get(key)
        if partial and partial["servers"]:
            out += [
                "",
                f"The rows of {', '.join(partial['servers'])} {rows} come from `{partial['command']}` "
                f"({partial['seconds'] / 60:.0f} minutes on {partial['machine']['date']}, commit "
                f"`{partial['machine']['commit']}`), on a fresh {lab} of the same machine.",
            ]
    return out


def workers_section(workers: list[Json]) -> list[str]:
    """Section 3's worker processes: requests/s with one process or worker and with one per CPU."""
    if not workers:
        return []
    out = [
        "",
        "### Worker processes",
        "",
        "The same `wrk` run through nginx, the host's server with one process and with one per CPU (column "
        "'as'): worker processes of its own (`asgi_server_workers`) for a server that runs them safely; else "
        "processes of the colour, each on its own socket behind nginx (`asgi_server_processes`), as the "
        "server's definition says (`max_workers: 1`, with its reason).",
        "",
        "| server | processes | as | CPUs | through nginx req/s | p99 ms | vs 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    single = {entry["server"]: entry for entry in workers if entry["workers"] == 1}
    for entry in workers:
        proxied = entry["proxied"]
        one = single.get(entry["server"], entry)["proxied"]["requests_per_second"]
        out.append(
            f"| {entry['server']} | {entry['workers']} | {entry.get('scaled_by', 'workers')} | {entry['cpus']} "
            f"| {proxied['requests_per_second']:.0f} "
            f"| {proxied['p99_ms']:.1f} | {ratio(proxied['requests_per_second'], one):.2f}x |"
        )
    return out


def memory_section(results: Json) -> list[str]:
    """Section 4: each app host's resident memory at rest and at its largest during the switch."""
    out = [
        "",
        "## 4. Resident memory per app host",
        "",
        "RSS summed over nginx's processes and the app's units (`ps -eo rss,unit`), in MiB. *At rest*: after the "
        "fleet moved to the server, no load. *During the switch*: the largest total seen while the measured "
        "rollout ran under load (sampled every 0.5 s), with the server processes then.",
        "",
        "| server | host | at rest MiB | during the switch MiB | server processes then |",
        "|---|---|---|---|---|",
    ]
    for entry in results["rollouts"]:
        rest, peak = entry["memory_kib"]["at_rest"], entry["memory_kib"]["during_switch"]
        for host in sorted(rest):
            at_rest = rest[host]["nginx"] + rest[host]["app"]
            out.append(
                f"| {entry['server']} | {host} | {mib(at_rest)} | {mib(peak[host]['kib'])} "
                f"| {peak[host].get('server_processes', '-')} |"
            )
    return out


def markdown(
    results: Json,
    notes: str,
    chart_name: str,
    causes: Json | None = None,
    scale: Json | None = None,
    migrations: Json | None = None,
    canary: Json | None = None,
    chaos: Json | None = None,
) -> str:
    """RESULTS.md: each section from its own function, in order; the sections of the other runs when they
    were measured; bench/notes.md last."""
    out = introduction(results, chart_name) + targets_section(results, scale)
    out += rollout_section(results, causes)
    out += deploy_section(results)
    out += throughput_section(results)
    out += memory_section(results)
    if scale:
        out += scale_section(scale)
    if migrations:
        out += migrations_section(migrations)
    if canary:
        out += canary_section(canary)
    if chaos:
        out += chaos_section(chaos)
    if notes.strip():
        out += ["", notes.strip()]
    return "\n".join(out) + "\n"


def chart(results: Json, path: Path) -> None:
    servers = [entry["server"] for entry in results["rollouts"]]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))

    def bars(axis, groups: list[str], series: dict[str, list[float]], title: str, unit: str) -> None:
        width = 0.8 / len(series)
        for index, (label, values) in enumerate(series.items()):
            positions = [number + (index - (len(series) - 1) / 2) * width for number in range(len(groups))]
            drawn = axis.bar(positions, values, width, label=label)
            axis.bar_label(drawn, fmt="%.0f", fontsize=7)
        axis.set_xticks(range(len(groups)), groups)
        axis.set_title(title, fontsize=10)
        axis.set_ylabel(unit)
        axis.legend(fontsize=8)

    bars(
        axes[0][0],
        servers,
        {
            "rollout (site.yml)": [entry["rollout"]["failed"] for entry in results["rollouts"]],
            "systemctl restart": [entry["tutorial_restart"]["failed"] for entry in results["rollouts"]],
        },
        "1. Failed requests while the fleet changes release",
        "failed requests",
    )
    bars(
        axes[0][1],
        servers,
        {
            "steady": [entry["steady"]["p99_ms"] for entry in results["rollouts"]],
            "during rollout": [entry["rollout"]["p99_ms"] for entry in results["rollouts"]],
            "systemctl restart": [entry["tutorial_restart"]["p99_ms"] for entry in results["rollouts"]],
        },
        "1. p99 latency through the load balancer",
        "ms",
    )
    deploys = by_hosts(results["deploy"])
    mitogen = by_hosts(results.get("deploy_mitogen", []))
    sizes = sorted(deploys)
    series = {
        "cold": [deploys[hosts]["cold"]["seconds"] for hosts in sizes],
        "re-run": [deploys[hosts]["rerun"]["seconds"] for hosts in sizes],
    }
    if set(mitogen) == set(deploys):
        series["cold, Mitogen"] = [mitogen[hosts]["cold"]["seconds"] for hosts in sizes]
        series["re-run, Mitogen"] = [mitogen[hosts]["rerun"]["seconds"] for hosts in sizes]
    bars(
        axes[1][0],
        [f"{hosts} app host{'s' if hosts > 1 else ''}" for hosts in sizes],
        series,
        "2. Deploy time (site.yml): cold and no-change re-run",
        "seconds",
    )
    throughput = {entry["server"]: entry for entry in results["throughput"]}
    tutorial = results.get("tutorial_throughput", {})
    bars(
        axes[1][1],
        [*servers, "tutorial"],
        {
            "through nginx": [throughput[name]["proxied"]["requests_per_second"] for name in servers]
            + [tutorial.get("requests_per_second", 0)],
            "server alone": [throughput[name]["direct"]["requests_per_second"] for name in servers] + [0],
        },
        "3. Requests/s on one app host (wrk, 32 connections)",
        "requests/s",
    )
    machine = results["machine"]
    figure.suptitle(
        f"bench/run, {machine['date']}, commit {machine['commit']}: {machine['cpus']} CPUs, {machine['cpu']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    parser.add_argument("--notes", type=Path, default=HERE / "notes.md")
    parser.add_argument("--p99-causes", type=Path, default=HERE / "p99-causes.json")
    parser.add_argument("--scale", type=Path, default=HERE / "scale.json")
    parser.add_argument("--migrations", type=Path, default=HERE / "migrations.json")
    parser.add_argument("--canary", type=Path, default=HERE / "canary.json")
    parser.add_argument("--chaos", type=Path, default=HERE / "chaos.json")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    options = parser.parse_args(argv)
    results = json.loads(options.results.read_text())
    chart_path = options.output.with_name("results.png")
    chart(results, chart_path)
    notes = options.notes.read_text() if options.notes.exists() else ""
    causes = json.loads(options.p99_causes.read_text()) if options.p99_causes.exists() else None
    scale = json.loads(options.scale.read_text()) if options.scale.exists() else None
    # Only bench/scale.py's current form: the fleets measured over SSH, with their batches.
    if scale and not all("rollout_count" in fleet for fleet in scale["fleets"]):
        scale = None
    migrations = json.loads(options.migrations.read_text()) if options.migrations.exists() else None
    canary = json.loads(options.canary.read_text()) if options.canary.exists() else None
    chaos = json.loads(options.chaos.read_text()) if options.chaos.exists() else None
    options.output.write_text(markdown(results, notes, chart_path.name, causes, scale, migrations, canary, chaos))
    print(f"wrote {options.output} and {chart_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
