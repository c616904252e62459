# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Say in one line why a source archive could not be built, and what to do."""

from __future__ import annotations

import re
from typing import Any

DOCUMENTATION = r"""
name: build_failure
short_description: One line naming a package that failed to build, where, and why
version_added: 0.3.0
description:
  - Takes one loop result of the builder's C(pip wheel) and returns the package, its version,
    the host's Python and platform, the builder, the last error lines of the compiler or pip,
    and what to add to the inventory.
options:
  _input:
    description: A loop result with C(item) (C(name), C(version)), C(stdout) and C(stderr).
    type: dict
    required: true
  python:
    description: The host's Python version.
    type: str
    required: true
  target:
    description: The kind of host (C(bookworm-cp311-x86_64)).
    type: str
    required: true
  builder:
    description: The builder's inventory name.
    type: str
    required: true
"""

EXAMPLES = r"""
- ansible.builtin.debug:
    msg: >-
      {{ result | django_asgi.rollout.build_failure(python='3.11', target='bookworm-cp311-x86_64', builder='app1') }}
"""

RETURN = r"""
_value:
  description: The message.
  type: str
"""

_NOISE = re.compile(
    r"subprocess-exited-with-error|note: This error originates|Failed to build|legacy-install-failure"
    r"|^ERROR: Could not build wheels"
)
_ERROR = re.compile(r"error|not found|cannot find|no such file", re.IGNORECASE)
_KEPT_LINES = 3


def reason(output: str) -> str:
    """The lines that say why: the last error lines, else the last lines."""
    lines = [line.strip(" |╰─>") for line in output.splitlines()]
    lines = [line for line in lines if line and not _NOISE.search(line)]
    errors = [line for line in lines if _ERROR.search(line)]
    return " / ".join((errors or lines)[-_KEPT_LINES:]) or "no output"


def build_failure(result: dict[str, Any], python: str, target: str, builder: str) -> str:
    item = result.get("item") or {}
    output = f"{result.get('stdout', '')}\n{result.get('stderr', '')}"
    return (
        f"{item.get('name')} {item.get('version')} could not be built for Python {python} on {target} "
        f"(builder {builder}): {reason(output)}. Add the Debian packages its build needs (headers such as "
        f"libpq-dev) to django_app_build_packages, and the libraries its wheel links (libpq5) to "
        f"django_app_runtime_packages"
    )


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"build_failure": build_failure}
