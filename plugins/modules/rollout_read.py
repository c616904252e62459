#!/usr/bin/python
# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Several small text files of one host read in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_read
short_description: Read several small text files of a host in one module run
description:
  - What a run of M(ansible.builtin.stat) and M(ansible.builtin.slurp) per file would do, in
    one module run for all of them. Each module run costs the host a Python start.
  - A file that does not exist reads as V(null), so a task needs no C(failed_when) for it.
  - For the small records the collection keeps (a colour, a unit's drop-in, a JSON record),
    not for large or binary files, nor for secrets, since contents come back in the result.
version_added: 0.3.0
author: django_asgi.rollout maintainers (@django-asgi)
options:
  files:
    description: A name for each file to read, and its absolute path.
    type: dict
    required: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
"""

EXAMPLES = r"""
- name: Read the serving colour and what it runs
  django_asgi.rollout.rollout_read:
    files:
      serving: /var/lib/mysite/active-colour
      blue: /var/lib/mysite/blue.json
  register: read

- name: Show the serving colour, or none
  ansible.builtin.debug:
    msg: "{{ (read.contents.serving or 'none') | trim }}"
"""

RETURN = r"""
contents:
  description: Each name given, with its file's text, or V(null) when the file does not exist.
  returned: always
  type: dict
  sample: {serving: "blue\n", blue: null}
"""

import os  # noqa: E402  (ansible-test wants the documentation first)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.text.converters import to_text  # noqa: E402


def read(path: str) -> str | None:
    """The file's text, or None when there is no such file."""
    if not os.path.isabs(path):
        raise ValueError("is not an absolute path")
    try:
        with open(path, "rb") as handle:
            return to_text(handle.read(), errors="surrogate_or_replace")
    except FileNotFoundError:
        return None


def main() -> None:
    module = AnsibleModule(argument_spec={"files": {"type": "dict", "required": True}}, supports_check_mode=True)
    contents = {}
    for name, path in module.params["files"].items():
        try:
            contents[name] = read(str(path))
        except (OSError, ValueError) as error:
            module.fail_json(msg=f"{name} ({path}): {error}")
    module.exit_json(changed=False, contents=contents)


if __name__ == "__main__":
    main()
