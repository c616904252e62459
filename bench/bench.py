"""Measure what a rollout costs on a lab of local containers; write bench/results.json.

Run by bench/run, which sets up the tools first. Four measurements, each in this one run:

1. deploy time: cold site.yml and a no-change re-run for 1, 6 and 3 app hosts (plus the load
   balancer), and what the shipped wheelhouse saves against each host installing from the index;
2. rollout under load, per server, against the tutorial way (``systemctl restart`` host by host),
   through the load balancer;
3. throughput on one app host: through its nginx, straight to the server (the ceiling), and the
   tutorial configuration (uvicorn without uvloop/httptools, on TCP, nginx without upstream keepalive);
4. resident memory per app host of nginx plus the app's units, at rest and during the switch.

All load goes to 127.0.0.1 (the load balancer's port published on the loopback) or runs inside a
lab container against that container's own loopback.

The lab and site.yml on it are lab.py's, each measurement is measure.py's; this run chooses what to
measure, in what order, and writes the results.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path
from measure import (
    deploy_times,
    rollout_under_load,
    task_cost,
    throughput,
    tutorial_throughput,
    wheelhouse_saving,
    workers_throughput,
)

from lab import (
    ROLLOUT_HOSTS,
    ROOT,
    WORK,
    Json,
    app_hosts,
    lab_down,
    lab_up,
    log,
    machine,
    on_host,
    site,
    write_inventory,
)

# The servers the asgi_server role defines, one file each.
SERVER_FILES = (ROOT / "roles" / "asgi_server" / "vars" / "main").glob("server_*.yml")
SERVERS = tuple(sorted(path.stem.removeprefix("server_") for path in SERVER_FILES))
FLEET_SIZES = (1, 6, 3)  # the 3-host fleet is built last and stays for the other measurements


def only_wheelhouse(options: argparse.Namespace) -> int:
    """Re-measure the wheelhouse figure alone and put it in the results of the last full run."""
    results = json.loads(options.output.read_text())
    count = max(FLEET_SIZES)
    try:
        lab_down()
        lab_up(count)
        shutil.rmtree(WORK / "controller-cache", ignore_errors=True)
        site(write_inventory(count), "-e", "django_app_release_id=r1")
        results["wheelhouse"] = wheelhouse_saving(count) | {
            "command": "bench/run --only-wheelhouse",
            "machine": machine(),
        }
    finally:
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {options.output}")
        if not options.keep:
            lab_down()
    return 0


def replace_server(entries: list[Json], new: list[Json]) -> list[Json]:
    """entries without those of new's servers, then new."""
    servers = {entry["server"] for entry in new}
    return [entry for entry in entries if entry["server"] not in servers] + new


def named_servers(option: str, value: str) -> list[str]:
    """The servers an --only-... option names, each one the role defines."""
    servers = value.split(",")
    unknown = set(servers) - set(SERVERS)
    if unknown:
        raise SystemExit(f"{option}: no such server {sorted(unknown)}; the choices are {', '.join(SERVERS)}")
    return servers


def save_partial_run(
    options: argparse.Namespace, results: Json, key: str, arguments: str, measured: list[str], began: float
) -> None:
    """Record which servers a partial run measured, write the results and remove the lab (unless --keep)."""
    results[key] = {
        "command": f"bench/run {arguments}",
        "servers": measured,
        "seconds": round(time.perf_counter() - began),
        "machine": machine(),
    }
    options.output.write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {options.output}")
    if not options.keep:
        lab_down()


def only_servers(options: argparse.Namespace) -> int:
    """Measure the named servers alone (rollout under load, throughput, workers) into the last full run's results."""
    results = json.loads(options.output.read_text())
    servers = named_servers("--only-servers", options.only_servers)
    began = time.perf_counter()
    measured: list[str] = []
    try:
        lab_down()
        lab_up(ROLLOUT_HOSTS)
        inventory = write_inventory(ROLLOUT_HOSTS)
        hosts = app_hosts(ROLLOUT_HOSTS)
        site(inventory, "-e", "django_app_release_id=r1")
        on_host(hosts[0], "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null")
        for server in servers:
            rollout = rollout_under_load(inventory, server, hosts)
            served = throughput(hosts[0], server)
            workers = workers_throughput(inventory, hosts[0], server)
            # A server's figures go in together, once all three are measured.
            results["rollouts"] = replace_server(results["rollouts"], [rollout])
            results["throughput"] = replace_server(results["throughput"], [served])
            results["workers"] = replace_server(results.get("workers", []), workers)
            measured.append(server)
    finally:
        save_partial_run(options, results, "servers_run", f"--only-servers {options.only_servers}", measured, began)
    return 0


def only_workers(options: argparse.Namespace) -> int:
    """Measure requests/s with 1 and N workers or processes for the named servers alone, into the last results."""
    results = json.loads(options.output.read_text())
    servers = named_servers("--only-workers", options.only_workers)
    began = time.perf_counter()
    measured: list[str] = []
    try:
        lab_down()
        lab_up(1)
        inventory = write_inventory(1)
        host = app_hosts(1)[0]
        site(inventory, "-e", "django_app_release_id=r1")
        on_host(host, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null")
        for server in servers:
            results["workers"] = replace_server(results.get("workers", []), workers_throughput(inventory, host, server))
            measured.append(server)
    finally:
        save_partial_run(options, results, "workers_run", f"--only-workers {options.only_workers}", measured, began)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    parser.add_argument(
        "--only-wheelhouse",
        action="store_true",
        help="measure the wheelhouse alone, on a cold-deployed fleet, into the existing results",
    )
    parser.add_argument(
        "--only-servers",
        metavar="NAMES",
        help="measure these servers alone (comma-separated), on a fresh 3-host fleet, into the existing results",
    )
    parser.add_argument(
        "--only-workers",
        metavar="NAMES",
        help="measure these servers' requests/s with 1 and N workers or processes alone, on one host, into the results",
    )
    options = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if options.only_wheelhouse:
        return only_wheelhouse(options)
    if options.only_servers:
        return only_servers(options)
    if options.only_workers:
        return only_workers(options)
    results: Json = {
        "command": "bench/run",
        "machine": machine(),
        "deploy": [],
        "deploy_mitogen": [],
        "rollouts": [],
        "throughput": [],
        "workers": [],
    }
    began = time.perf_counter()
    try:
        for count in FLEET_SIZES:
            try:
                results["deploy_mitogen"].append(deploy_times(count, "mitogen"))
            except RuntimeError as error:  # a third-party strategy; plain Ansible's figures still count
                results["deploy_mitogen"].append({"hosts": count, "error": str(error)[-2000:]})
            results["deploy"].append(deploy_times(count, "ansible"))  # last: the 3-host fleet stays
            if count == max(FLEET_SIZES):
                try:
                    results["wheelhouse"] = wheelhouse_saving(count)
                except RuntimeError as error:  # the hosts may not reach the index; the rest still counts
                    results["wheelhouse"] = {"error": str(error)[-2000:]}
        inventory = write_inventory(ROLLOUT_HOSTS)
        hosts = app_hosts(ROLLOUT_HOSTS)
        results["task_cost_seconds"] = task_cost(inventory)
        on_host(hosts[0], "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null")
        for server in SERVERS:
            results["rollouts"].append(rollout_under_load(inventory, server, hosts))
            results["throughput"].append(throughput(hosts[0], server))
            results["workers"] += workers_throughput(inventory, hosts[0], server)
            if server == "uvicorn":
                results["tutorial_throughput"] = tutorial_throughput(hosts[0])
    finally:
        results["bench_seconds"] = round(time.perf_counter() - began)
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        log(f"wrote {options.output}")
        if not options.keep:
            lab_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
