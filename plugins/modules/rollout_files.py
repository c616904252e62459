#!/usr/bin/python
# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Several directories, files and links of one host in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_files
short_description: Set several directories, files and links of a host in one module run
description:
  - What a run of M(ansible.builtin.file) and M(ansible.builtin.copy) per path would do, in
    one module run for the whole list. Each module run costs the host a Python start, so a
    role that writes a dozen paths costs a dozen of them with those modules.
  - Paths are handled in the order given, so a directory comes before what goes into it.
  - A file is written only when its content differs, through a temporary file in its own
    directory that is renamed over it. Owner, group and mode are set when they differ.
  - With O(validate), a command checks the result (C(nginx -t), say); when it fails, every
    path the run changed gets back what it was, and the task fails with the command's output.
  - Not for secrets, since contents go through the task's arguments. Write those with
    M(ansible.builtin.template) and C(no_log).
version_added: 0.3.0
author: django_asgi.rollout maintainers (@django-asgi)
options:
  paths:
    description: What each path must be, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: The absolute path.
        type: path
        required: true
      state:
        description:
          - V(directory) (parents created as needed), V(file) (with O(paths[].content)),
            V(link) (a symbolic link to O(paths[].src)) or V(absent) (removed, with what it holds).
        type: str
        choices: [directory, file, link, absent]
        required: true
      content:
        description: The file's content, for V(file).
        type: str
      src:
        description: What the link points to, for V(link); it need not exist.
        type: path
      owner:
        description: The owner of a directory or file.
        type: str
        default: root
      group:
        description: The group of a directory or file.
        type: str
        default: root
      mode:
        description: The octal mode of a directory or file, as a string (V('0644')); required for both.
        type: str
  validate:
    description:
      - A command (its arguments) run once every path is set, outside check mode, whether or not
        anything changed. When it exits with other than 0, each path the run changed is put back
        as it was before, in reverse order (a file its content, owner, group and mode; a link its
        target; a path that did not exist is removed; a removed directory is not restored),
        and the task fails with the command's output.
    type: list
    elements: str
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
"""

EXAMPLES = r"""
- name: Write and enable an nginx site; the previous one comes back if nginx -t refuses it
  django_asgi.rollout.rollout_files:
    paths:
      - path: /etc/nginx/sites-available/mysite.conf
        state: file
        content: "{{ lookup('ansible.builtin.template', 'site.conf.j2') }}"
        mode: "0644"
      - path: /etc/nginx/sites-enabled/mysite.conf
        state: link
        src: /etc/nginx/sites-available/mysite.conf
    validate: [nginx, -t, -q]

- name: Create the state directory and record the serving colour
  django_asgi.rollout.rollout_files:
    paths:
      - { path: /var/lib/mysite, state: directory, mode: "0755" }
      - { path: /var/lib/mysite/colour, state: file, content: "blue\n", mode: "0644" }
      - path: /etc/systemd/system/mysite@blue-2.service.d
        state: link
        src: /etc/systemd/system/mysite@blue.service.d
"""

RETURN = r"""
changed_paths:
  description: The paths that changed (or would change, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/mysite/colour]
"""

import os  # noqa: E402  (ansible-test wants the documentation first)
import shutil  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes, to_text  # noqa: E402


def _file_args(item: dict) -> dict:
    return {
        "path": item["path"],
        "owner": item["owner"],
        "group": item["group"],
        "mode": item["mode"],
        "secontext": None,
        "attributes": None,
    }


def _kind(path: str) -> str:
    if os.path.islink(path):
        return "link"
    if os.path.isdir(path):
        return "directory"
    if os.path.exists(path):
        return "file"
    return "absent"


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _replace_link(path: str, target: str) -> None:
    """Point a link at target through a new link renamed over it, so it never goes missing."""
    temporary = f"{path}.rollout-{os.getpid()}"
    os.symlink(target, temporary)
    os.replace(temporary, path)


def _replace_file(path: str, content: bytes, set_attributes) -> None:
    """Write a file through a temporary one in its directory, given its owner and mode, then renamed."""
    descriptor, temporary = tempfile.mkstemp(prefix=".rollout-", dir=os.path.dirname(path))
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    try:
        # Owner and mode before the name: the file never shows with other ones.
        set_attributes(temporary)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _attributes(module: AnsibleModule, item: dict, changed: bool, diff: dict) -> bool:
    if module.check_mode and not os.path.exists(item["path"]):
        return changed  # created in a real run, with these attributes
    return module.set_fs_attributes_if_different(_file_args(item), changed, diff)


def ensure(module: AnsibleModule, item: dict) -> tuple[bool, dict]:
    """Bring one path to what the item says; return whether it changed, and its diff."""
    path, state = item["path"], item["state"]
    before = _kind(path)
    diff = {"before_header": path, "after_header": path, "before": {"state": before}, "after": {"state": state}}
    changed = False

    if state == "absent":
        if before != "absent":
            changed = True
            if not module.check_mode:
                _remove(path)
        return changed, diff

    if before not in ("absent", state):
        # A path of another kind (a directory where a link goes, say) is replaced.
        changed = True
        if not module.check_mode:
            _remove(path)

    if state == "directory":
        if not os.path.isdir(path) or os.path.islink(path):
            changed = True
            if not module.check_mode:
                os.makedirs(path)
        return _attributes(module, item, changed, diff), diff

    if state == "link":
        target = item["src"]
        current = os.readlink(path) if before == "link" else None
        diff["before"]["src"], diff["after"]["src"] = current, target
        if current != target:
            changed = True
            if not module.check_mode:
                _replace_link(path, target)
        return changed, diff

    # state == "file"
    wanted = to_bytes(item["content"] if item["content"] is not None else "", errors="surrogate_or_strict")
    current = b""
    if before == "file":
        with open(path, "rb") as handle:
            current = handle.read()
    if before != "file" or current != wanted:
        changed = True
        diff = {
            "before_header": path,
            "after_header": path,
            "before": to_text(current, errors="surrogate_or_replace") if before == "file" else "",
            "after": to_text(wanted, errors="surrogate_or_replace"),
        }
        if not module.check_mode:
            _replace_file(
                path,
                wanted,
                lambda temporary: module.set_fs_attributes_if_different(dict(_file_args(item), path=temporary), False),
            )
    return _attributes(module, item, changed, {}), diff


def snapshot(path: str) -> tuple:
    """What a path is now, enough to put a file or link back."""
    kind = _kind(path)
    if kind == "file":
        status = os.stat(path)
        with open(path, "rb") as handle:
            return kind, handle.read(), status.st_mode & 0o7777, status.st_uid, status.st_gid
    if kind == "link":
        return kind, os.readlink(path)
    return (kind,)


def restore(path: str, before: tuple) -> None:
    """Put a path back as snapshot() saw it (a directory that was removed stays removed)."""
    kind = before[0]
    now = _kind(path)
    if kind == "directory":
        return
    if kind == "absent" or now not in ("absent", kind):
        if now != "absent":
            _remove(path)
        if kind == "absent":
            return
    if kind == "link":
        _replace_link(path, before[1])
        return
    content, mode, uid, gid = before[1:]

    def set_attributes(temporary: str) -> None:
        os.chown(temporary, uid, gid)
        os.chmod(temporary, mode)

    _replace_file(path, content, set_attributes)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "state": {"type": "str", "required": True, "choices": ["directory", "file", "link", "absent"]},
                    "content": {"type": "str"},
                    "src": {"type": "path"},
                    "owner": {"type": "str", "default": "root"},
                    "group": {"type": "str", "default": "root"},
                    "mode": {"type": "str"},
                },
                "required_if": [
                    ("state", "file", ("content", "mode")),
                    ("state", "directory", ("mode",)),
                    ("state", "link", ("src",)),
                ],
            },
            "validate": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    validate = module.params["validate"] if not module.check_mode else None
    changed_paths = []
    diffs = []
    before = []
    for item in module.params["paths"]:
        try:
            saved = snapshot(item["path"]) if validate else None
            changed, diff = ensure(module, item)
        except OSError as error:
            module.fail_json(msg=f"{item['path']}: {error}", changed_paths=changed_paths)
        if changed:
            changed_paths.append(item["path"])
            diffs.append(diff)
            before.append((item["path"], saved))
    if validate:
        rc, out, err = module.run_command(validate)
        if rc != 0:
            for path, saved in reversed(before):
                restore(path, saved)
            module.fail_json(
                msg=f"{' '.join(validate)} refused the result, so what changed was put back: " + (err or out).strip(),
                rc=rc,
                stdout=out,
                stderr=err,
                changed_paths=[],
            )
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths, diff=diffs)


if __name__ == "__main__":
    main()
