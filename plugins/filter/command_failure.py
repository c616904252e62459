# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Say in one line why a command the rollout ran for the app failed, from the command's own output."""

from __future__ import annotations

import re
from typing import Any

DOCUMENTATION = r"""
name: command_failure
short_description: One line saying why a failed command failed, from its output
version_added: 0.3.0
description:
  - "Takes a failed task's result (C(ansible_failed_result)). When its output holds a Python traceback, returns
    the project's file and line the exception came from (the last frame outside the venv and the standard
    library, relative to the release's C(src)) and the exception's own line, such as
    C(demo/settings.py:106: KeyError: 'DEMO_SECRET_KEY')."
  - Otherwise the last non-empty lines of its stderr (systemd-run's own lines left out), else its C(msg).
options:
  _input:
    description: The failed task's result.
    type: dict
    required: true
"""

EXAMPLES = r"""
- ansible.builtin.debug:
    msg: "building the release failed: {{ ansible_failed_result | django_asgi.rollout.command_failure }}"
"""

RETURN = r"""
_value:
  description: The reason, one line.
  type: str
"""

_FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)')
# Lines of a traceback that are not the exception: its header and the chaining sentences.
_NOT_EXCEPTION = ("Traceback (most recent call last)", "During handling of", "The above exception")
_OUTSIDE = ("site-packages", "/lib/python3", "<frozen")
# What systemd-run --wait --pipe says of the transient unit: not the command's own words.
_SYSTEMD_RUN = re.compile(
    r"^(Running as unit|Finished with result|Main processes terminated|Service runtime|CPU time|Memory peak|IP traffic)"
)
_KEPT_LINES = 2


def _project_path(path: str) -> str:
    """A file of the release, as the project names it: what follows the release's src/ directory."""
    _release, found, inside = path.partition("/src/")
    return inside if found else path


def traceback_reason(output: str) -> str | None:
    """The project frame and the exception line of the last traceback in the output, if there is one."""
    lines = [line.rstrip() for line in output.splitlines()]
    starts = [index for index, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return None
    tail = lines[starts[-1] :]
    frames = [match for match in map(_FRAME.match, tail) if match]
    exception = ""
    for line in tail[1:]:
        if line and not line.startswith((" ", "\t", *_NOT_EXCEPTION)) and not _SYSTEMD_RUN.match(line):
            exception = line.strip()
    if not exception:
        return None
    project = [frame for frame in frames if not any(part in frame["path"] for part in _OUTSIDE)]
    if not project:
        return exception
    return f"{_project_path(project[-1]['path'])}:{project[-1]['line']}: {exception}"


def command_failure(result: dict[str, Any]) -> str:
    stderr = str(result.get("stderr") or "")
    stdout = str(result.get("stdout") or "")
    reason = traceback_reason(stderr) or traceback_reason(stdout)
    if reason:
        return reason
    own = [line.strip() for line in stderr.splitlines() if line.strip() and not _SYSTEMD_RUN.match(line.strip())]
    if own:
        return " / ".join(own[-_KEPT_LINES:])
    return str(result.get("msg") or "failed")


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"command_failure": command_failure}
