#!/usr/bin/python
# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Documentation of the wheelhouse action, which runs on the controller only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wheelhouse
short_description: Make on the controller the wheelhouse each kind of app host installs from
description:
  - Runs on the controller only (an action plugin), whatever host the task names.
  - Resolves the project's dependency file with uv for each target's Python and platform
    (a requirements file with C(-r), C(-c) and C(--hash) lines, a C(pyproject.toml), or a
    C(uv.lock) through C(uv export)), together with the target's C(extra).
  - Downloads a wheel for each pinned package, or its source archive where it has no wheel
    for the target. Pure-Python source archives are built into wheels here, once; source
    archives that compile are returned in RV(wheelhouses.to_build) for a builder host of
    that target, whose wheels go into RV(wheelhouses.built_dir) and are used from then on.
  - Once every package has a wheel, writes C(wheelhouse-KEY.tar) with the wheels and
    C(requirements.lock), the pinned set the hosts install with no index.
  - Reports no change, since it only fills the controller's cache.
version_added: 0.3.0
author: django_asgi.rollout maintainers (@django-asgi)
options:
  source:
    description: The project's source directory on the controller.
    type: path
    required: true
  requirements:
    description: The dependency file, relative to O(source).
    type: str
    required: true
  targets:
    description:
      - One entry per kind of host, with keys C(distribution) (such as C(bookworm)), C(version)
        (C(3.11)), C(tag) (C(311)), C(machine) (C(x86_64)), C(glibc) (C(2.36)) and C(extra), the
        requirements installed beside the project's (the ASGI server's packages).
      - Targets of one kind of host (distribution, Python, machine) share one builder and its wheels.
    type: list
    elements: dict
    required: true
  cache:
    description: The controller's cache directory.
    type: path
    required: true
  python:
    description: The controller's Python with pip and uv; the one running Ansible by default.
    type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: It fills the controller's cache in check mode too, and never changes a host.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
    details: Runs on the controller.
"""

EXAMPLES = r"""
- name: Make the wheelhouse of a Debian 12 host
  django_asgi.rollout.wheelhouse:
    source: /srv/checkout/mysite
    requirements: requirements/production.txt
    targets:
      - {distribution: bookworm, version: "3.11", tag: "311", machine: x86_64, glibc: "2.36", extra: [uvicorn==0.38.0]}
    cache: ~/.cache/django_asgi_rollout
  run_once: true
"""

RETURN = r"""
wheelhouses:
  description: Per target, in the order of O(targets), what the controller made.
  returned: always
  type: list
  elements: dict
  contains:
    request:
      description: The target as given.
      type: dict
    target:
      description: The kind of host, such as C(bookworm-cp311-x86_64).
      type: str
    key:
      description: Names the wheelhouse and the venv built from it.
      type: str
    complete:
      description: Whether the wheelhouse archive is ready.
      type: bool
    archive:
      description: The wheelhouse archive on the controller (when complete).
      type: str
    to_build:
      description: Source archives that compile, for a builder of the target (C(name), C(version), C(file)).
      type: list
      elements: dict
    builder_archive:
      description: The source archives and their build requirements, for the builder.
      type: str
    built_dir:
      description: Where the builder's wheels go back on the controller.
      type: str
    installer:
      description:
        - The uv binary for the target's machine on the controller (the controller's uv version, from its wheel),
          which creates the venv and installs into it.
        - Empty when no uv wheel exists for that machine; pip does it then.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "path", "required": True},
            "requirements": {"type": "str", "required": True},
            "targets": {"type": "list", "elements": "dict", "required": True},
            "cache": {"type": "path", "required": True},
            "python": {"type": "path"},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="wheelhouse runs on the controller: its action plugin does the work")


if __name__ == "__main__":
    main()
