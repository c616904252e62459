"""The run's record (plugins/action/rollout_run.py), in a real ansible-playbook on two hosts that are the controller."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLAYBOOK = """
- name: A run's record, written the way the playbooks write it
  hosts: app_servers
  gather_facts: false
  tasks:
    - name: Begin the run's record
      django_asgi.rollout.rollout_run:
        start: true
        set: {started_at: 100}
      delegate_to: localhost
      delegate_facts: true
      run_once: true

    - name: A host fails
      django_asgi.rollout.rollout_run:
        first: {failure: "{{ inventory_hostname }} failed"}
      delegate_to: localhost
      delegate_facts: true
      when: inventory_hostname == 'app1'

    - name: Then another, because of it; the first failure says why
      django_asgi.rollout.rollout_run:
        first: {failure: "{{ inventory_hostname }} failed"}
      delegate_to: localhost
      delegate_facts: true
      when: inventory_hostname == 'app2'

    - name: A batch
      django_asgi.rollout.rollout_run:
        append: {batches: {batch: 1}}
      delegate_to: localhost
      delegate_facts: true
      run_once: true

    - name: Another batch
      django_asgi.rollout.rollout_run:
        append: {batches: {batch: 2}}
      delegate_to: localhost
      delegate_facts: true
      run_once: true

    - name: Each host's own record
      django_asgi.rollout.rollout_run:
        record: host
        set: {done: true, seconds: "{{ 1.5 if inventory_hostname == 'app1' else 2.5 }}"}

    - name: What the records hold
      ansible.builtin.assert:
        that:
          - hostvars['localhost'].rollout_run.started_at == 100
          - hostvars['localhost'].rollout_run.failure == 'app1 failed'
          - hostvars['localhost'].rollout_run.batches | map(attribute='batch') | list == [1, 2]
          - rollout_host.done
          - rollout_host.seconds == (1.5 if inventory_hostname == 'app1' else 2.5)
          - rollout_host.keys() | list | sort == ['done', 'seconds']
          - rollout_run is not defined

    - name: A new run forgets the last one
      django_asgi.rollout.rollout_run:
        start: true
        set: {started_at: 200}
      delegate_to: localhost
      delegate_facts: true
      run_once: true

    - name: Nothing of the last run is left
      ansible.builtin.assert:
        that: hostvars['localhost'].rollout_run.keys() | list == ['started_at']

    - name: A key the record does not hold
      django_asgi.rollout.rollout_run:
        record: host
        set: {finished: true}
      register: unknown
      ignore_errors: true

    - name: The run's record set from a host, not the controller
      django_asgi.rollout.rollout_run:
        set: {failure: lost}
      register: undelegated
      ignore_errors: true

    - name: Both refused, saying why
      ansible.builtin.assert:
        that:
          - unknown is failed
          - "'the host record holds no finished' in unknown.msg"
          - undelegated is failed
          - "'delegate_to: localhost and delegate_facts: true' in undelegated.msg"
"""


def test_the_records_hold_what_the_playbooks_write(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "app_servers:\n  hosts:\n"
        + "".join(
            f"    {name}: {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}\n"
            for name in ("app1", "app2")
        )
    )
    playbook = tmp_path / "record.yml"
    playbook.write_text(PLAYBOOK)
    run = subprocess.run(  # noqa: S603  (the venv's ansible-playbook on files this test wrote)
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)],
        cwd=tmp_path,
        env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "failed=0" in run.stdout
