# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""django_asgi.rollout.rollout_run: the one door through which a run records its state.

Two records, each a fact: ``rollout_run`` on the controller (localhost) holds
the run's own state (when it started, why it stopped, its batches, the
canary's verdict); ``rollout_host`` on each app host holds how that host's
switch went. Nothing runs on a host; the record is returned as a fact, which
the task lands on localhost with ``delegate_to: localhost`` and
``delegate_facts: true``.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

RECORDS = {"run": "rollout_run", "host": "rollout_host"}
# What each record holds: a key outside these is a mistake of the playbook.
KEYS = {
    "run": {"started_at", "failure", "batches", "canary", "canary_since", "canary_stopped", "canary_hosts"},
    "host": {"started_at", "digest", "done", "switched", "seconds", "failed", "rolled_back", "report"},
}


def updated(record: dict[str, Any], set_: dict, first: dict, append: dict, start: bool = False) -> dict[str, Any]:
    """The record (empty when start) with set_ merged in, first's keys set where absent, append's items added."""
    result = {} if start else dict(record)
    result.update(set_)
    for key, value in first.items():
        result.setdefault(key, value)
    for key, item in append.items():
        result[key] = [*result.get(key, []), item]
    return result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("record", "start", "set", "first", "append"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        record = args.get("record", "run")
        if record not in RECORDS:
            raise AnsibleActionFail(f"record must be run or host, got {record!r}")
        parts = {name: args.get(name) or {} for name in ("set", "first", "append")}
        for name, value in parts.items():
            if not isinstance(value, dict):
                raise AnsibleActionFail(f"{name} must be a mapping, got {type(value).__name__}")
        unknown = sorted({key for value in parts.values() for key in value} - KEYS[record])
        if unknown:
            raise AnsibleActionFail(
                f"the {record} record holds no {', '.join(unknown)} (it holds {', '.join(sorted(KEYS[record]))})"
            )
        fact = RECORDS[record]
        if record == "run":
            if not self._task.delegate_facts or self._task.delegate_to != "localhost":
                raise AnsibleActionFail(
                    "record=run lands on the controller: use delegate_to: localhost and delegate_facts: true"
                )
            current = task_vars.get("hostvars", {}).get("localhost", {}).get(fact) or {}
        else:
            current = task_vars.get(fact) or {}
        result["ansible_facts"] = {
            fact: updated(
                current, parts["set"], parts["first"], parts["append"], start=boolean(args.get("start", False))
            )
        }
        result["changed"] = False
        return result
