"""What a fleet costs as it grows: 3, 6 and 12 app hosts, reached over SSH as the deploy user.

On fresh containers (the load balancer and N app hosts, nothing installed, an empty controller
cache), reached as the lab reaches its hosts (SSH as the deploy user, sudo, pipelining, connection
reuse), four runs of site.yml:

- cold: the first deploy (release r1);
- no change: the same again;
- rollout by count: release r2, ``rollout_serial=1``, one host per batch;
- rollout by share: release r3, ``rollout_serial=25%``.

For each, the wall clock and the CPU seconds the controller (ansible-playbook and its workers), every
lab container (their cgroups' cpuacct.usage) and the whole machine (/proc/stat) used; for each
rollout, the wall clock and controller CPU of every batch (from the plays' timeline, which
bench/callback_plugins/module_runs.py records) and the batches the run's JSON report lists. The goal:
a cost per batch that stays flat as hosts are added. Writes bench/scale.json, which bench/report.py
turns into a section of bench/RESULTS.md. About 20 minutes on 2 CPUs:

    .venv/bin/python bench/scale.py [--sizes 3,6,12] [--keep]

--keep leaves the last fleet running (its inventory is .cache/bench/inventory-N-ssh/hosts.yml); each
run's output is in .cache/bench/scale-N-RUN.log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path
import lab

SIZES = (3, 6, 12)
BATCH_PLAY = "Switch the app hosts, batch by batch"


def containers_cpu_seconds(hosts: list[str]) -> float:
    """CPU seconds the hosts' containers have used since they started (cgroup v1 cpuacct)."""
    total = 0
    for host in hosts:
        full_id = lab.run("docker", "inspect", "-f", "{{.Id}}", lab.container(host)).strip()
        total += int(Path(f"/sys/fs/cgroup/cpuacct/docker/{full_id}/cpuacct.usage").read_text())
    return total / 1e9


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq), all CPUs together."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def batches(plays: list[lab.Json], report: lab.Json) -> list[lab.Json]:
    """Each batch's wall clock and controller CPU: from its play's start to the next play's."""
    starts = [index for index, play in enumerate(plays) if play["name"] == BATCH_PLAY]
    # A run that switches no host (a first deploy, no change) still starts the play once, on no host;
    # the report lists only the batches that ran, in order.
    return [
        {
            "hosts": batch["hosts"],
            "seconds": round(plays[index + 1]["wall"] - plays[index]["wall"], 1),
            "controller_cpu_seconds": round(plays[index + 1]["cpu"] - plays[index]["cpu"], 1),
        }
        for index, batch in zip(starts, report.get("batches", []), strict=False)
    ]


def measured(inventory: Path, hosts: list[str], label: str, *extra: str) -> lab.Json:
    report_path = lab.WORK / f"report-{label}.json"
    report_path.unlink(missing_ok=True)
    before, busy_before = containers_cpu_seconds(hosts), machine_busy_seconds()
    figures = lab.site(inventory, *extra, "-e", f"rollout_report={report_path}")
    # Each run's output, kept: a change where none was expected is then found by its task.
    shutil.copy(lab.WORK / "last-playbook.log", lab.WORK / f"scale-{label}.log")
    hosts_cpu, busy = containers_cpu_seconds(hosts) - before, machine_busy_seconds() - busy_before
    cpus = os.cpu_count() or 1
    report = json.loads(report_path.read_text())
    app_hosts = len(hosts) - 1
    result = {
        "arguments": " ".join(extra),
        "outcome": report["outcome"],
        "seconds": figures["seconds"],
        "changed": figures["changed"],
        "controller_cpu_seconds": figures["controller_cpu_seconds"],
        "seconds_per_app_host": round(figures["seconds"] / app_hosts, 1),
        "controller_cpu_per_app_host": round(figures["controller_cpu_seconds"] / app_hosts, 1),
        "hosts_cpu_seconds": round(hosts_cpu, 1),
        # Everything else the run made busy (dockerd, sshd and ssh, the kernel) is in here too.
        "machine_busy_seconds": round(busy, 1),
        "machine_busy_share": round(busy / cpus / figures["seconds"], 2),
        "switched": sorted(name for name, host in report["hosts"].items() if host["outcome"] == "switched"),
    }
    done = batches(figures["plays"], report)
    if done:
        result["batches"] = done
        result["batch_seconds_median"] = round(statistics.median(batch["seconds"] for batch in done), 1)
        result["batch_controller_cpu_median"] = round(
            statistics.median(batch["controller_cpu_seconds"] for batch in done), 1
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=lab.ROOT / "bench" / "scale.json")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="app host counts, comma-separated")
    parser.add_argument("--keep", action="store_true", help="leave the last fleet running")
    options = parser.parse_args(argv)
    sizes = [int(size) for size in options.sizes.split(",")]
    if max(sizes) > lab.MAX_HOSTS:
        parser.error(f"--sizes: at most {lab.MAX_HOSTS} app hosts")
    lab.WORK.mkdir(parents=True, exist_ok=True)
    results: lab.Json = {"command": ".venv/bin/python bench/scale.py", "machine": lab.machine(), "fleets": []}
    try:
        for count in sizes:
            lab.lab_down()
            lab.lab_up(count)
            inventory = lab.write_inventory(count, ssh=True)
            shutil.rmtree(lab.WORK / "controller-cache", ignore_errors=True)
            hosts = ["lb", *lab.app_hosts(count)]
            fleet = {"hosts": count, "connection": "ssh as deploy, sudo, pipelining"}
            for label, extra in (
                ("cold", ("-e", "django_app_release_id=r1")),
                ("rerun", ("-e", "django_app_release_id=r1")),
                ("rollout_count", ("-e", "django_app_release_id=r2", "-e", "rollout_serial=1")),
                ("rollout_share", ("-e", "django_app_release_id=r3", "-e", "rollout_serial=25%")),
            ):
                fleet[label] = measured(inventory, hosts, f"{count}-{label}", *extra)
                lab.log(f"{count} app host(s), {label}: {fleet[label]['seconds']} s")
            results["fleets"].append(fleet)
            options.output.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        lab.log(f"wrote {options.output}")
        if not options.keep:
            lab.lab_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
