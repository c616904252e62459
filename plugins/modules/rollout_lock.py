#!/usr/bin/python
# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rollout lock on one host: one rollout of an app at a time."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_lock
short_description: Take or release the lock that keeps two rollouts of an app apart
description:
  - Takes the lock with an exclusive create of O(path), so of two rollouts started
    at once on the same hosts exactly one gets each host's lock.
  - The lock names its owner, that is the controller, the C(ansible-playbook) process and
    when it started. A rollout that finds the lock held by another owner fails
    with that owner's name and leaves the lock alone.
  - The action plugin of the same name fills in O(owner) on the controller, and
    takes over a lock whose owner was a C(ansible-playbook) process of this
    controller that no longer runs (a run that was interrupted).
  - Reports no change, since the lock is bookkeeping of the rollout, not configuration,
    so a converged fleet stays at C(changed=0).
version_added: 0.2.0
author: django_asgi.rollout maintainers (@django-asgi)
options:
  path:
    description: The lock file, on a file system that a reboot empties (C(/run/lock)).
    type: path
    required: true
  state:
    description: V(present) takes the lock, V(absent) releases it if this owner holds it.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Who takes the lock; set by the action plugin, not by the playbook.
      - Keys C(run) (a unique id of the run), C(controller), C(pid), C(user) and C(started).
    type: dict
    required: true
  take_over_from:
    description:
      - The C(run) id of a holder known to be gone; its lock is taken over.
      - Set by the action plugin after it checked on the controller.
    type: str
  force:
    description: Take or release the lock whoever holds it (C(-e rollout_lock_break=true)).
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: In check mode a lock held by another run still refuses; nothing is written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
"""

EXAMPLES = r"""
- name: Take the rollout lock
  django_asgi.rollout.rollout_lock:
    path: /run/lock/django-asgi-rollout-mysite.json

- name: Release it
  django_asgi.rollout.rollout_lock:
    path: /run/lock/django-asgi-rollout-mysite.json
    state: absent
"""

RETURN = r"""
holder:
  description: Who held the lock when the module looked (empty when it was free).
  returned: always
  type: dict
  sample:
    run: ctl/4242/1795300000
    controller: ctl
    pid: 4242
    user: deploy
    started: "2026-11-22T03:50:00Z"
taken_over:
  description: Whether a stale or forced lock of another run was replaced.
  returned: always
  type: bool
locked:
  description: Whether this run holds the lock now (in check mode, whether it could take it).
  returned: always
  type: bool
"""

# Ansible modules keep their imports below the documentation.
import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def read_holder(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as lock_file:
            holder = json.load(lock_file)
    except FileNotFoundError:
        return {}
    except ValueError:
        # A lock cut short (full disk, crash while writing) still counts as held.
        return {"run": "unreadable"}
    return holder if isinstance(holder, dict) else {"run": "unreadable"}


def create_exclusively(path: str, owner: dict) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as lock_file:
        json.dump(owner, lock_file, sort_keys=True)
        lock_file.write("\n")
    return True


def replace(path: str, owner: dict) -> None:
    staging = f"{path}.{owner.get('pid', 0)}.tmp"
    with open(staging, "w", encoding="utf-8") as lock_file:
        json.dump(owner, lock_file, sort_keys=True)
        lock_file.write("\n")
    os.replace(staging, path)


def describe(holder: dict) -> str:
    return "{user}@{controller} (ansible-playbook pid {pid}, started {started}, run {run})".format(
        **{key: holder.get(key, "?") for key in ("user", "controller", "pid", "started", "run")}
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "dict", "required": True},
            "take_over_from": {"type": "str"},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    owner = module.params["owner"]
    run = str(owner.get("run", ""))
    if not run:
        module.fail_json(msg="owner.run must name the run taking the lock")
    holder = read_holder(path)

    if module.params["state"] == "absent":
        if holder and (holder.get("run") == run or module.params["force"]) and not module.check_mode:
            os.unlink(path)
        module.exit_json(changed=False, holder=holder, taken_over=False, locked=False)

    if holder.get("run") == run:
        module.exit_json(changed=False, holder=holder, taken_over=False, locked=True)
    take_over = bool(holder) and (module.params["force"] or holder.get("run") == module.params["take_over_from"])
    if holder and not take_over:
        module.fail_json(
            msg=(
                f"Another rollout holds the lock {path}: {describe(holder)}. Wait for it to finish. If that run "
                "is gone (its controller crashed or lost this host), run again with -e rollout_lock_break=true."
            ),
            holder=holder,
            taken_over=False,
            locked=False,
        )
    if module.check_mode:
        module.exit_json(changed=False, holder=holder, taken_over=take_over, locked=True)
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    if take_over:
        replace(path, owner)
    elif not create_exclusively(path, owner):
        holder = read_holder(path)
        module.fail_json(
            msg=f"Another rollout took the lock {path} at the same moment: {describe(holder)}.",
            holder=holder,
            taken_over=False,
            locked=False,
        )
    module.exit_json(changed=False, holder=holder, taken_over=take_over, locked=True)


if __name__ == "__main__":
    main()
