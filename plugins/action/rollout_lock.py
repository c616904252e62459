# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side of django_asgi.rollout.rollout_lock: who owns the lock, and whether a holder is gone."""

from __future__ import annotations

import datetime
import getpass
import os
import socket

from ansible.plugins.action import ActionBase


def _process_start_ticks(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot, which tells a process from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19]


def _boot_time() -> int:
    with open("/proc/stat", encoding="utf-8") as stat:
        for line in stat:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


def _playbook_process() -> int:
    """The ansible-playbook process: task workers are forked from it."""
    return os.getppid()


def owner_of_this_run() -> dict:
    pid = _playbook_process()
    ticks = _process_start_ticks(pid) or "0"
    controller = socket.gethostname()
    started = _boot_time() + int(ticks) // os.sysconf("SC_CLK_TCK")
    return {
        "run": f"{controller}/{pid}/{ticks}",
        "controller": controller,
        "pid": pid,
        "user": getpass.getuser(),
        "started": datetime.datetime.fromtimestamp(started, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def holder_is_gone(holder: dict, owner: dict) -> bool:
    """A holder can be known to be gone only on its own controller: its process ended or is a newer one."""
    if not holder or holder.get("controller") != owner["controller"]:
        return False
    try:
        _controller, pid, ticks = str(holder.get("run", "")).rsplit("/", 2)
        return _process_start_ticks(int(pid)) != ticks
    except ValueError:
        return False


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("path", "state", "force"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        arguments = dict(self._task.args, owner=owner_of_this_run())
        answer = self._execute_module(
            module_name="django_asgi.rollout.rollout_lock", module_args=arguments, task_vars=task_vars
        )
        holder = answer.get("holder") or {}
        if answer.get("failed") and holder_is_gone(holder, arguments["owner"]):
            arguments["take_over_from"] = holder["run"]
            answer = self._execute_module(
                module_name="django_asgi.rollout.rollout_lock", module_args=arguments, task_vars=task_vars
            )
            if not answer.get("failed"):
                self._display.warning(
                    f"Took over the rollout lock of run {holder['run']}: its ansible-playbook process has ended."
                )
        result.update(answer)
        return result
