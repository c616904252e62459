# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Counts the module runs of a playbook run on each host, for bench/ (not part of the collection).

A module run is one task (or one loop item, or one retry of an `until`) whose
action starts a process on the host: everything but the actions that run on
the controller alone (set_fact, assert, include_*, meta, ...). A delegated
task counts on the host it was delegated to. Also a timeline: each play as it
starts (each batch of a serial play is a play of its own), with the wall clock
and the controller's CPU seconds then (this process and its reaped workers).
Written as JSON to the path in MODULE_RUNS_OUTPUT when the run ends:
{"hosts": {name: runs}, "actions": {...}, "plays": [{"name", "wall", "cpu"}, ...]},
the last entry, named "end", when the run ended.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: module_runs
type: aggregate
short_description: Counts module runs per host (bench only)
description: Writes the counts to the path in MODULE_RUNS_OUTPUT.
"""

# Actions that run on the controller and start nothing on a host.
CONTROLLER_ONLY = frozenset(
    f"{prefix}{name}"
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for name in (
        "set_fact",
        "assert",
        "fail",
        "debug",
        "group_by",
        "add_host",
        "include_tasks",
        "import_tasks",
        "include_role",
        "import_role",
        "include_vars",
        "meta",
        "validate_argument_spec",
        "set_stats",
        "pause",
    )
) | {"django_asgi.rollout.rollout_run"}  # the run's record: a fact on the controller, like set_fact


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "module_runs"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.hosts: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.plays: list[dict] = []

    def _mark(self, name: str) -> None:
        times = os.times()
        cpu = times.user + times.system + times.children_user + times.children_system
        self.plays.append({"name": name, "wall": round(time.perf_counter(), 2), "cpu": round(cpu, 2)})

    def v2_playbook_on_play_start(self, play):
        self._mark(play.get_name())

    def _count(self, result) -> None:
        task = result._task
        action = task.action
        if action in CONTROLLER_ONLY:
            return
        delegated = result._result.get("_ansible_delegated_vars", {}).get("ansible_host")
        host = task.delegate_to if task.delegate_to and delegated else result._host.get_name()
        if host in ("localhost", "127.0.0.1"):
            return
        self.hosts[host] += 1
        self.actions[action.rsplit(".", 1)[-1]] += 1

    def _finished(self, result) -> None:
        # A loop is counted by its items, a skipped task not at all.
        if result._task.loop is None and not result._result.get("skipped"):
            self._count(result)

    v2_runner_on_ok = _finished

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._finished(result)

    def v2_runner_on_unreachable(self, result):
        pass

    def v2_runner_item_on_ok(self, result):
        if not result._result.get("skipped"):
            self._count(result)

    v2_runner_item_on_failed = v2_runner_item_on_ok

    def v2_runner_retry(self, result):
        self._count(result)

    def v2_playbook_on_stats(self, stats):
        self._mark("end")
        output = os.environ.get("MODULE_RUNS_OUTPUT")
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                counts = {"hosts": dict(self.hosts), "actions": dict(self.actions.most_common()), "plays": self.plays}
                json.dump(counts, handle, indent=2)
