#!/usr/bin/python
# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Documentation of the rollout_run action, which runs on the controller only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_run
short_description: Record the state of a rollout in one place
description:
  - The one way the playbooks record a run's state. V(run) is the controller's
    record, the fact C(rollout_run) on C(localhost), with C(started_at), C(failure)
    (the first reason the run stopped), C(batches), C(canary), C(canary_since),
    C(canary_stopped), C(canary_hosts). V(host) is each app host's record, the fact
    C(rollout_host), with C(started_at), C(digest), C(done), C(switched), C(seconds),
    C(failed), C(rolled_back), C(report). Any other key fails the task.
  - Runs on the controller only and changes nothing on any host, so it reports no change.
version_added: 0.3.0
author: django_asgi.rollout maintainers (@django-asgi)
options:
  record:
    description:
      - "V(run) updates the controller's record; the task needs C(delegate_to: localhost)
        and C(delegate_facts: true) so the fact lands there."
      - V(host) updates the record of the host the task runs for.
    type: str
    choices: [run, host]
    default: run
  start:
    description:
      - Begin the record afresh, forgetting what it held. The lock play does, for the run and
        each host, so a fact cache never carries a record into the next run.
    type: bool
    default: false
  set:
    description: Keys to set, replacing what the record held.
    type: dict
    default: {}
  first:
    description: Keys to set only where the record has none yet (the first failure of a run says why).
    type: dict
    default: {}
  append:
    description: Items to add, each to the list under its key.
    type: dict
    default: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The records are kept in check mode too, so a checked run reports as a run does.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: all
"""

EXAMPLES = r"""
- name: Stop the rollout, saying why
  django_asgi.rollout.rollout_run:
    first:
      failure: "{{ inventory_hostname }}: the build failed"
  delegate_to: localhost
  delegate_facts: true

- name: Note the host as done
  django_asgi.rollout.rollout_run:
    record: host
    set:
      done: true
"""

RETURN = r"""
ansible_facts:
  description: The updated record, as C(rollout_run) or C(rollout_host).
  returned: always
  type: dict
"""
