"""What a no-change site.yml costs above the least any Ansible run of the same hosts costs.

On a lab already deployed (lab.py's lab, 3 app hosts and the load balancer; run after
``bench/p99_causes.py --keep`` or ``bench/run --keep``): a no-change site.yml and bench/floor.yml
(facts, then five cheap module runs per host: as many module runs as the no-change site.yml makes,
without its logic), each three times, one after the other. Writes bench/floor.json; bench/notes.md
quotes it. About 2 minutes:

    .venv/bin/python bench/floor.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package: its siblings, by path
import lab

ROUNDS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=lab.ROOT / "bench" / "floor.json")
    parser.add_argument("--release", default="p3", help="the release the lab serves (p99_causes.py leaves p3)")
    options = parser.parse_args(argv)
    inventory = lab.write_inventory(lab.ROLLOUT_HOSTS)
    runs: dict[str, list[lab.Json]] = {"site_no_change": [], "floor": []}
    release = ("-e", "asgi_server_kind=uvicorn", "-e", f"django_app_release_id={options.release}")
    for _round in range(ROUNDS):
        runs["site_no_change"].append(lab.site(inventory, *release))
        runs["floor"].append(lab.site(inventory, playbook="bench/floor.yml"))
    results: lab.Json = {"command": ".venv/bin/python bench/floor.py", "machine": lab.machine(), "runs": runs}
    for name, measured in runs.items():
        if name == "site_no_change" and any(run["changed"] for run in measured):
            raise SystemExit(f"the lab does not serve {options.release}: site.yml changed something")
        results[name] = {
            "median_seconds": statistics.median(run["seconds"] for run in measured),
            "median_controller_cpu_seconds": statistics.median(run["controller_cpu_seconds"] for run in measured),
            "module_runs": measured[0]["module_runs"],
        }
        lab.log(f"{name}: {results[name]}")
    options.output.write_text(json.dumps(results, indent=1) + "\n")
    lab.log(f"wrote {options.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
