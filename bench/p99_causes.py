"""Where the rollout's p99 comes from: the same load while each part of a rollout runs alone.

On the bench's 3-host fleet with uvicorn, under the load of bench.py's section 1:
steady; a no-change site.yml (Ansible's tasks alone: nothing built, nothing switched); rollback.yml
(the switch alone: the previous colour started, probed, switched to, the other drained; nothing
built); a full rollout (build and switch) with Mitogen, where each task costs the hosts less. The
rollout with plain Ansible is bench.py's. Writes bench/p99-causes.json, which bench/report.py adds to
RESULTS.md. About 15 minutes:

    .venv/bin/python bench/p99_causes.py [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # bench/ is not a package: its sibling, by path

SERVER = "uvicorn"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=bench.ROOT / "bench" / "p99-causes.json")
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    options = parser.parse_args(argv)
    bench.WORK.mkdir(parents=True, exist_ok=True)
    count = bench.ROLLOUT_HOSTS
    results: bench.Json = {
        "command": ".venv/bin/python bench/p99_causes.py",
        "machine": bench.machine(),
        "server": SERVER,
        "hosts": count,
    }
    mitogen = bench.mitogen_environment()

    def release(name: str) -> tuple[str, ...]:
        return ("-e", f"asgi_server_kind={SERVER}", "-e", f"django_app_release_id={name}")

    try:
        bench.lab_down()
        bench.lab_up(count)
        inventory = bench.write_inventory(count)
        shutil.rmtree(bench.WORK / "controller-cache", ignore_errors=True)
        bench.site(inventory, *release("p1"))
        bench.site(inventory, *release("p2"))  # the idle colour now holds p1, for the rollback
        results["steady"] = bench.steady_state()
        bench.log(f"  steady: p99 {results['steady']['p99_ms']} ms")
        results["no_change_run"] = bench.under_load("no-change site.yml", lambda: bench.site(inventory, *release("p2")))
        results["switch_alone"] = bench.under_load(
            "rollback.yml", lambda: bench.site(inventory, playbook="playbooks/rollback.yml")
        )
        results["rollout_mitogen"] = bench.under_load(
            "site.yml to p3 with Mitogen", lambda: bench.site(inventory, *release("p3"), environment=mitogen)
        )
    finally:
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        bench.log(f"wrote {options.output}")
        if not options.keep:
            bench.lab_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
