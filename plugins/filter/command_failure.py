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
  - Otherwise the last non-empty lines of its stderr (systemd-run's own lines left out), else its C(msg) on one line.
  - A C(msg) that ends in the journal of a colour that did not start (C(Last journal lines:)) becomes its first
    sentences and the cause the journal gives, read as above with journalctl's own prefixes left out.
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
# A message over several lines (Django's for a CSS file's missing reference) is kept to its first paragraph.
_EXCEPTION_LINES = 3
# An object's repr in a message ("<...ManifestStaticFilesStorage object at 0x7f85...>"): its class is enough.
_OBJECT_REPR = re.compile(r"<(?:[A-Za-z_][A-Za-z0-9_]*[.])*([A-Za-z_][A-Za-z0-9_]*) object at 0x[0-9a-f]+>")
# journalctl's short output: "Dec 06 21:23:43 app1 uvicorn[4840]: " before each line.
_JOURNAL_PREFIX = re.compile(r"^[A-Z][a-z]{2} [ 0-9]?[0-9] [0-9:]{8} \S+ [^:\s]+(\[[0-9]+\])?: ")
_JOURNAL_HEADER = "Last journal lines:"


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
    exception = _OBJECT_REPR.sub(r"\1", exception_line(tail))
    if not exception:
        return None
    # What the command said just before (Django's collectstatic names the file it was processing).
    said = [line for line in lines[: starts[-1]] if line.strip()][-1:]
    if said and not said[0].startswith((" ", "\t", *_NOT_EXCEPTION)) and not _SYSTEMD_RUN.match(said[0]):
        exception = f"{said[0].strip()} {exception}"
    project = [frame for frame in frames if not any(part in frame["path"] for part in _OUTSIDE)]
    if not project:
        return exception
    return f"{_project_path(project[-1]['path'])}:{project[-1]['line']}: {exception}"


def exception_line(traceback: list[str]) -> str:
    """The exception a traceback ends with, on one line: its first line and those that go on from it."""
    frames = [index for index, line in enumerate(traceback) if _FRAME.match(line)]
    after = traceback[frames[-1] + 1 :] if frames else traceback[1:]
    told: list[str] = []
    for line in after:
        if _SYSTEMD_RUN.match(line.strip()) or line.startswith(_NOT_EXCEPTION):
            break
        if not told:
            # The frame's own source lines (and the carets under them) come first, indented.
            if line and not line.startswith((" ", "\t")):
                told.append(line.strip())
            continue
        if not line.strip() or len(told) == _EXCEPTION_LINES:
            break
        told.append(line.strip())
    return " ".join(told)


def last_lines(output: str) -> str:
    """The last non-empty lines of a command's own output, on one line."""
    own = [line.strip() for line in output.splitlines() if line.strip() and not _SYSTEMD_RUN.match(line.strip())]
    return " / ".join(own[-_KEPT_LINES:])


def journal_reason(message: str) -> str | None:
    """A failed start's message, on one line: what it says before the journal, and the cause the journal gives."""
    head, found, journal = message.partition(_JOURNAL_HEADER)
    if not found:
        return None
    plain = "\n".join(_JOURNAL_PREFIX.sub("", line) for line in journal.splitlines())
    cause = traceback_reason(plain) or last_lines(plain)
    head = " ".join(head.split())
    return f"{head} {cause}".strip() if cause else head


def command_failure(result: dict[str, Any]) -> str:
    stderr = str(result.get("stderr") or "")
    stdout = str(result.get("stdout") or "")
    reason = traceback_reason(stderr) or traceback_reason(stdout) or last_lines(stderr)
    if reason:
        return reason
    message = str(result.get("msg") or "failed")
    return journal_reason(message) or " ".join(message.split())


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"command_failure": command_failure}
