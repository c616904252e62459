# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Jinja test for a command given as a list of arguments, as systemd's ExecStart= gets it."""

from __future__ import annotations

DOCUMENTATION = r"""
name: command_line
short_description: Is the value a command as a list of one-line arguments
version_added: 0.1.0
description:
  - True for a non-empty list of non-empty strings (or numbers), none holding a
    line break or a NUL, whose first item is not an option (C(-x)).
  - A single string is refused, so a command is never split on spaces by guess.
options:
  _input:
    description: The value to test.
    type: raw
    required: true
"""

EXAMPLES = r"""
- ansible.builtin.assert:
    that: item.command is django_asgi.rollout.command_line
  loop: "{{ asgi_server_extra_processes }}"
"""

RETURN = r"""
_value:
  description: Whether the value is a list of one-line arguments.
  type: bool
"""


def command_line(value: object) -> bool:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        return False
    arguments = [str(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else item for item in value]
    if not all(isinstance(item, str) and item and not any(c in item for c in "\n\r\0") for item in arguments):
        return False
    return not arguments[0].startswith("-")


class TestModule:
    def tests(self) -> dict[str, object]:
        return {"command_line": command_line}
