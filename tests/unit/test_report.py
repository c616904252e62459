"""The run's JSON report (playbooks/tasks/report_file.yml) against its schema (playbooks/report.schema.json).

The report task runs in a real ansible-playbook, on two app hosts that are the
controller itself, with the facts a rollout leaves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "playbooks" / "report.schema.json").read_text())

PLAYBOOK = """
- name: A rollout's end, as the report sees it
  hosts: app_servers
  gather_facts: false
  vars:
    rollout_playbook: site
  tasks:
    - name: The run began 12 s ago
      django_asgi.rollout.rollout_run:
        start: true
        set:
          started_at: "{{{{ now(utc=true).timestamp() - 12 }}}}"
          batches: [{{"batch": 1, "hosts": [app1], "hosts_done": 1, "hosts_total": 2, "elapsed_seconds": 9.5}}]
          {failure}
      delegate_to: localhost
      delegate_facts: true
      run_once: true

    - name: What each host serves
      django_asgi.rollout.rollout_run:
        record: host
        set:
          report:
            release: v2
            server: uvicorn
            colour: green
            healthy: true
            outcome: "{{{{ 'switched' if inventory_hostname == 'app1' else 'not switched' }}}}"
            seconds: "{{{{ 8.2 if inventory_hostname == 'app1' else None }}}}"

    - name: Write the report
      ansible.builtin.include_tasks: {tasks}/report_file.yml
"""


def run_report(tmp_path: Path, *extra: str, failure: str = "") -> subprocess.CompletedProcess:
    inventory = tmp_path / "hosts.yml"
    interpreter = sys.executable
    inventory.write_text(
        "app_servers:\n  hosts:\n"
        + "".join(
            f"    {name}: {{ansible_connection: local, ansible_python_interpreter: {interpreter}}}\n"
            for name in ("app1", "app2")
        )
    )
    playbook = tmp_path / "report.yml"
    playbook.write_text(
        PLAYBOOK.format(
            tasks=ROOT / "playbooks" / "tasks",
            failure=f"failure: {json.dumps(failure)}" if failure else "",
        )
    )
    environment = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0")
    return subprocess.run(  # noqa: S603  (the venv's ansible-playbook on files this test wrote)
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook), *extra],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_finished_rollout_writes_a_report_that_follows_its_schema(tmp_path):
    result = run_report(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "rollout-report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["outcome"] == "succeeded" and report["failure"] is None
    assert report["maintenance"] is False
    assert report["seconds"] >= 12
    assert report["hosts"]["app1"] == {
        "release": "v2",
        "server": "uvicorn",
        "colour": "green",
        "healthy": True,
        "outcome": "switched",
        "seconds": 8.2,
    }
    assert report["hosts"]["app2"]["outcome"] == "not switched"
    assert report["batches"][0]["hosts"] == ["app1"]


def test_a_failed_rollout_says_why_and_the_path_is_the_users(tmp_path):
    (tmp_path / "out").mkdir()
    result = run_report(tmp_path, "-e", "rollout_report=out/run.json", failure="app1: did not pass its health probe")
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "out" / "run.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["outcome"] == "failed"
    assert report["failure"] == "app1: did not pass its health probe"


def test_a_rollout_in_maintenance_mode_says_so(tmp_path):
    result = run_report(tmp_path, "-e", "rollout_maintenance=true")
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "rollout-report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["maintenance"] is True


@pytest.mark.parametrize("bad", [{"outcome": "maybe"}, {"hosts": {"app1": {"release": "v2"}}}])
def test_the_schema_refuses_what_a_pipeline_could_not_read(tmp_path, bad):
    result = run_report(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "rollout-report.json").read_text()) | bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)
