# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn a role's argument spec into the one the preflight play checks."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: preflight_spec
short_description: A role's options, as the preflight checks them before any host changes
version_added: 0.1.0
description:
  - Takes the C(options) of a role's argument spec and drops the options the playbook itself
    passes from one role to the next (they do not exist yet before the run), and every C(default)
    (a default is the role's business; preflight only checks what the inventory provides).
options:
  _input:
    description: The C(options) dictionary of an argument spec entry point.
    type: dict
    required: true
  wired:
    description: Names of the options the playbook passes between roles.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- ansible.builtin.validate_argument_spec:
    argument_spec: >-
      {{ spec.argument_specs.main.options | django_asgi.rollout.preflight_spec(['asgi_server_release']) }}
"""

RETURN = r"""
_value:
  description: The options to validate.
  type: dict
"""


def _without_defaults(option: dict[str, Any]) -> dict[str, Any]:
    stripped = {key: value for key, value in option.items() if key != "default"}
    if isinstance(stripped.get("options"), dict):
        stripped["options"] = {name: _without_defaults(sub) for name, sub in stripped["options"].items()}
    return stripped


def preflight_spec(options: dict[str, dict[str, Any]], wired: list[str] | None = None) -> dict[str, dict[str, Any]]:
    skipped = set(wired or [])
    return {name: _without_defaults(option) for name, option in options.items() if name not in skipped}


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"preflight_spec": preflight_spec}
