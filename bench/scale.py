"""Where the time of 1 and 6 app hosts goes: wall clock against the CPU the controller and the hosts used.

On fresh containers (the load balancer and N app hosts, nothing installed, an empty controller
cache): a cold site.yml and a no-change re-run, as bench.py's deploy times, with the CPU seconds the
controller (ansible-playbook and its workers) and every lab container (their cgroups' cpuacct.usage)
used in each, and how busy the whole machine was (/proc/stat): a share near 1 means every CPU was
busy for the whole run, so the run was as fast as this machine's CPUs allow. Writes bench/scale.json;
bench/notes.md quotes it. About 8 minutes:

    .venv/bin/python bench/scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # bench/ is not a package: its sibling, by path

SIZES = (1, 6)


def containers_cpu_seconds(hosts: list[str]) -> float:
    """CPU seconds the hosts' containers have used since they started (cgroup v1 cpuacct)."""
    total = 0
    for host in hosts:
        full_id = bench.run("docker", "inspect", "-f", "{{.Id}}", bench.container(host)).strip()
        total += int(Path(f"/sys/fs/cgroup/cpuacct/docker/{full_id}/cpuacct.usage").read_text())
    return total / 1e9


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (user, nice, system, irq, softirq), all CPUs together."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def measured(inventory: Path, hosts: list[str]) -> bench.Json:
    before, busy_before = containers_cpu_seconds(hosts), machine_busy_seconds()
    figures = bench.site(inventory, "-e", "django_app_release_id=r1")
    hosts_cpu, busy = containers_cpu_seconds(hosts) - before, machine_busy_seconds() - busy_before
    cpus = os.cpu_count() or 1
    return {
        "seconds": figures["seconds"],
        "changed": figures["changed"],
        "controller_cpu_seconds": figures["controller_cpu_seconds"],
        "hosts_cpu_seconds": round(hosts_cpu, 1),
        # Everything else the run made busy (dockerd relaying each docker exec, the kernel) is in here too.
        "machine_busy_seconds": round(busy, 1),
        "machine_busy_share": round(busy / cpus / figures["seconds"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=bench.ROOT / "bench" / "scale.json")
    options = parser.parse_args(argv)
    bench.WORK.mkdir(parents=True, exist_ok=True)
    results: bench.Json = {"command": ".venv/bin/python bench/scale.py", "machine": bench.machine(), "fleets": []}
    try:
        for count in SIZES:
            bench.lab_down()
            bench.lab_up(count)
            inventory = bench.write_inventory(count)
            shutil.rmtree(bench.WORK / "controller-cache", ignore_errors=True)
            hosts = ["lb", *bench.app_hosts(count)]
            fleet = {"hosts": count, "cold": measured(inventory, hosts), "rerun": measured(inventory, hosts)}
            bench.log(f"{count} app host(s): {fleet}")
            results["fleets"].append(fleet)
    finally:
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        bench.log(f"wrote {options.output}")
        bench.lab_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
