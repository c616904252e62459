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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path
import measure

import lab

SERVER = "uvicorn"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=lab.ROOT / "bench" / "p99-causes.json")
    parser.add_argument("--keep", action="store_true", help="leave the bench containers running")
    options = parser.parse_args(argv)
    lab.WORK.mkdir(parents=True, exist_ok=True)
    count = lab.ROLLOUT_HOSTS
    results: lab.Json = {
        "command": ".venv/bin/python bench/p99_causes.py",
        "machine": lab.machine(),
        "server": SERVER,
        "hosts": count,
    }
    mitogen = lab.mitogen_environment()

    def release(name: str) -> tuple[str, ...]:
        return ("-e", f"asgi_server_kind={SERVER}", "-e", f"django_app_release_id={name}")

    try:
        lab.lab_down()
        lab.lab_up(count)
        inventory = lab.write_inventory(count)
        shutil.rmtree(lab.WORK / "controller-cache", ignore_errors=True)
        lab.site(inventory, *release("p1"))
        lab.site(inventory, *release("p2"))  # the idle colour now holds p1, for the rollback
        results["steady"] = measure.steady_state()
        lab.log(f"  steady: p99 {results['steady']['p99_ms']} ms")
        results["no_change_run"] = measure.under_load("no-change site.yml", lambda: lab.site(inventory, *release("p2")))
        results["switch_alone"] = measure.under_load(
            "rollback.yml", lambda: lab.site(inventory, playbook="playbooks/rollback.yml")
        )
        results["rollout_mitogen"] = measure.under_load(
            "site.yml to p3 with Mitogen", lambda: lab.site(inventory, *release("p3"), environment=mitogen)
        )
    finally:
        options.output.write_text(json.dumps(results, indent=1) + "\n")
        lab.log(f"wrote {options.output}")
        if not options.keep:
            lab.lab_down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
