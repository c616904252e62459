#!/usr/bin/python
# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A colour (blue or green) of an app on a host: what it runs, starting it, retiring it, whether the host changed."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_colour
short_description: Read, start, restore or retire a colour of an app on a host, or tell whether the host is unchanged
description:
  - An app runs on two colours, C(blue) and C(green), each a set of systemd units; one serves, the other
    holds the previous release. This module knows those units by name (the collection's C(colour_units)
    module utility spells them, for it and for the C(release_processes) and C(colour_units) filters alike)
    and runs C(systemctl) on them, without a shell.
  - The unit files themselves are written by M(django_asgi.rollout.rollout_files) from the role's templates.
  - In check mode it changes nothing and says what it would do; with C(--diff) it shows what it changes.
version_added: 0.3.0
author: django_asgi.rollout maintainers (@django-asgi)
options:
  action:
    description:
      - V(read) reports which of the colour's units are active and enabled.
      - V(start) starts the colour's other processes and timers that are not active, after stopping the
        O(previous) colour's processes of the O(extra) items with C(hosts=one); each unit it started must then
        be active O(settle) seconds later, without a restart, else it fails naming the units (C(not running
        <settle> s after its start:)) and returns what it started and stopped, for V(restore).
      - V(stop_one_host) stops and disables, on this host, every unit of either colour of the O(extra) items with
        C(hosts=one) (run on the other app hosts when one of them moves to this host).
      - V(restore) reads the journal of the colour's units, and, when O(switching), stops them, writes back
        O(files) (a null content removes the file), removes the unit files of its other processes and timers and
        reloads systemd; it starts the units in O(restart) again (those V(start) stopped).
      - V(retire) waits until nginx's old workers are gone (at most O(drain_timeout) seconds, 0 for no limit),
        stops and disables every unit of the O(previous) colour that runs or starts at boot, removes the unit
        files of its other processes and timers, and enables the units of O(colour) at boot. It publishes
        C(asgi_server_releases_in_use).
      - V(unchanged) reads the serving colour from O(state_file); when C(nginx.service) and every unit of that
        colour are active, and O(digest_file) holds O(digest), the host is unchanged. Otherwise a digest file
        left is removed. It publishes C(asgi_server_unchanged).
    type: str
    required: true
    choices: [read, start, stop_one_host, restore, retire, unchanged]
  app:
    description: The app's name, which its units begin with.
    type: str
    required: true
  colour:
    description:
      - The colour acted on (for V(retire), the one that serves).
      - Required but for V(stop_one_host) and V(unchanged).
    type: str
    choices: [blue, green]
  previous:
    description:
      - The colour that served before this switch, for V(start) and V(retire).
      - Empty when there is none or the colour did not change.
    type: str
    default: ""
  processes:
    description: How many processes the web server runs on the colour.
    type: int
    default: 1
  extra:
    description:
      - The app's other processes and timers on this host, as the C(release_processes) filter returns them;
        each needs C(name), C(kind) (V(service) or V(timer)), C(count) and C(hosts) (V(every) or V(one)),
        and other keys are ignored.
    type: list
    elements: dict
    default: []
  settle:
    description: Seconds each unit V(start) started must stay active, without a restart.
    type: int
    default: 5
  drain_timeout:
    description: The most seconds V(retire) waits for nginx's old workers; 0 waits for as long as they last.
    type: int
    default: 60
  restart:
    description: Units V(restore) starts again (what V(start) returned as RV(stopped)).
    type: list
    elements: str
    default: []
  switching:
    description:
      - For V(restore), whether the colour took a new release in this run (it is stopped and gets O(files) back).
    type: bool
    default: true
  files:
    description: For V(restore), the content each file gets back, by absolute path; null removes the file.
    type: dict
    default: {}
  release_dir:
    description: For V(retire), the directory of the release O(colour) serves.
    type: str
  other_record:
    description: For V(retire), the record of the other colour (JSON naming its C(release.dir)), which need not exist.
    type: path
  state_file:
    description: For V(unchanged), the file naming the serving colour.
    type: path
  digest_file:
    description: For V(unchanged), the file holding the digest recorded when the host last switched.
    type: path
  digest:
    description: For V(unchanged), the digest of what this run would make of the host; empty never matches.
    type: str
    default: ""
  unit_dir:
    description: Where the unit files are.
    type: path
    default: /etc/systemd/system
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
- name: Start the green colour's worker and its timer, and gate them on staying up 5 seconds
  django_asgi.rollout.rollout_colour:
    action: start
    app: demo
    colour: green
    previous: blue
    settle: 5
    extra:
      - { name: worker, kind: service, count: 2, hosts: every }
      - { name: clearsessions, kind: timer, count: 1, hosts: every }
  register: started

- name: Drain and stop blue, enable green's units at boot
  django_asgi.rollout.rollout_colour:
    action: retire
    app: demo
    colour: green
    previous: blue
    processes: 2
    drain_timeout: 60
    release_dir: /srv/demo/releases/r2
    other_record: /var/lib/demo/blue.json

- name: Tell whether the host already serves what this run makes
  django_asgi.rollout.rollout_colour:
    action: unchanged
    app: demo
    processes: 2
    state_file: /var/lib/demo/active-colour
    digest_file: /var/lib/demo/host-digest
    digest: "{{ rollout_digest }}"
"""

RETURN = r"""
units:
  description: The colour's units (web server's first, then its other processes' and timers'), for V(read).
  returned: action is read
  type: list
  elements: str
  sample: [demo@blue.service, demo-worker-blue@1.service]
active:
  description: Those of RV(units) that are active, for V(read).
  returned: action is read
  type: list
  elements: str
enabled:
  description: Those of RV(units) that start at boot, for V(read); for V(retire), those it enabled (or would).
  returned: action is read or retire
  type: list
  elements: str
started:
  description: The units V(start) started (or would, in check mode).
  returned: action is start
  type: list
  elements: str
  sample: [demo-beat-green@1.service, demo-worker-green@1.service]
stopped:
  description:
    - For V(start), the previous colour's units it stopped (to start again when the switch fails); for
      V(stop_one_host), V(restore) and V(retire), the units it stopped (or would).
  returned: always, but for read and unchanged
  type: list
  elements: str
removed:
  description:
    - The unit files V(restore) or V(retire) removed (or would), and the files V(restore) or V(unchanged) removed.
  returned: action is restore, retire or unchanged
  type: list
  elements: str
journal:
  description: The last 40 lines of the journal of the colour's units, for V(restore).
  returned: action is restore
  type: str
msg:
  description: What it did (or would do), a line for each kind of change; empty when nothing.
  returned: always
  type: str
ansible_facts:
  description: C(asgi_server_releases_in_use) for V(retire), C(asgi_server_unchanged) for V(unchanged).
  returned: action is retire or unchanged
  type: dict
  sample: {asgi_server_releases_in_use: [/srv/demo/releases/r2, /srv/demo/releases/r1]}
"""

import json  # noqa: E402  (ansible-test wants the documentation first)
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes, to_text  # noqa: E402
from ansible_collections.django_asgi.rollout.plugins.module_utils import colour_units as names  # noqa: E402

# The state of a unit that is running or about to.
RUNNING_STATES = "--state=active,activating,reloading"
# What nginx's old workers are called once a reload told them to finish what they hold.
SHUTTING_DOWN = "^nginx: worker process is shutting down"
JOURNAL_LINES = "40"


class Host:
    """What the actions do on the host: commands (argv lists, no shell), time, and the module's check mode."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.check = module.check_mode
        self.systemctl = module.get_bin_path("systemctl", required=True)

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        return self.module.run_command(argv, check_rc=False)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def now(self) -> float:
        return time.monotonic()


class Failed(Exception):
    """An action that failed, with what it returns."""

    def __init__(self, msg: str, result: dict | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.result = result or {}


def _systemctl(host, *argv: str) -> tuple[int, str, str]:
    return host.run([getattr(host, "systemctl", "systemctl"), *argv])


def _must(host, *argv: str) -> str:
    rc, out, err = _systemctl(host, *argv)
    if rc != 0:
        raise Failed(f"systemctl {' '.join(argv)} failed ({rc}): {(err or out).strip()}")
    return out


def _is_active(host, unit: str) -> bool:
    # One unit per call: with several, is-active succeeds when any one is active.
    return _systemctl(host, "is-active", "--quiet", unit)[0] == 0


def _is_enabled(host, unit: str) -> bool:
    return _systemctl(host, "is-enabled", "--quiet", unit)[0] == 0


def _listed(host, globs: list[str], *options: str) -> list[str]:
    """The units systemctl list-units lists for the patterns, first column only."""
    rc, out, _err = _systemctl(host, "list-units", *options, "--plain", "--no-legend", *globs)
    if rc != 0:
        return []
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _show(host, unit: str, prop: str) -> str:
    return _systemctl(host, "show", "--property", prop, "--value", unit)[1].strip()


def _said(check: bool, lines: list[tuple[str, list[str]]]) -> str:
    would = "would be " if check else ""
    return "\n".join(f"{would}{what}: {' '.join(units)}" for what, units in lines if units)


def _diff(before: list[str], after: list[str]) -> dict:
    return {"before": "".join(f"{line}\n" for line in before), "after": "".join(f"{line}\n" for line in after)}


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return to_text(handle.read(), errors="surrogate_or_replace")
    except FileNotFoundError:
        return None


def _write(path: str, content: str) -> None:
    """The file gets the content (mode 0644), through a temporary file renamed over it."""
    directory = os.path.dirname(path)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".rollout_colour.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(to_bytes(content))
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def colour_units(params: dict, colour: str) -> list[str]:
    """Every unit of the colour: the web server's, then its other processes' and timers'."""
    return names.web_units(params["app"], colour, params["processes"]) + names.all_extra_units(
        params["app"], params["extra"], colour
    )


def read(host, params: dict) -> dict:
    units = colour_units(params, params["colour"])
    return {
        "changed": False,
        "units": units,
        "active": [unit for unit in units if _is_active(host, unit)],
        "enabled": [unit for unit in units if _is_enabled(host, unit)],
        "msg": "",
    }


def stop_one_host(host, params: dict) -> dict:
    """Every unit, of either colour, of the items that run on one host only, stopped and disabled here."""
    stopped = []
    for item in params["extra"]:
        if item.get("hosts") != "one":
            continue
        units = _listed(host, names.any_colour_globs(params["app"], item["name"]), "--all")
        if units and not host.check:
            _must(host, "disable", "--quiet", "--now", *units)
        stopped += units
    return {
        "changed": bool(stopped),
        "stopped": stopped,
        "msg": _said(host.check, [("stopped", stopped)]),
        "diff": _diff([f"{unit} running" for unit in stopped], [f"{unit} stopped, disabled" for unit in stopped]),
    }


def start(host, params: dict) -> dict:
    """The colour's other processes and timers started, gated on staying up.

    The previous colour's processes that run on one host only stop first.
    """
    app, colour, previous = params["app"], params["colour"], params["previous"]
    one = [item for item in params["extra"] if item.get("hosts") == "one"]
    stopped = []
    if previous:
        for item in one:
            stopped += _listed(host, names.colour_of_globs(app, item["name"], previous), RUNNING_STATES)
        if stopped and not host.check:
            _systemctl(host, "stop", *stopped)
    # Those of one host first, as they were listed.
    ordered = one + [item for item in params["extra"] if item.get("hosts") != "one"]
    started = [unit for unit in names.all_extra_units(app, ordered, colour) if not _is_active(host, unit)]
    result = {
        "changed": bool(stopped or started),
        "started": started,
        "stopped": stopped,
        "msg": _said(host.check, [("stopped on the previous colour", stopped), ("started", started)]),
        "diff": _diff(
            [f"{unit} running" for unit in stopped] + [f"{unit} stopped" for unit in started],
            [f"{unit} stopped" for unit in stopped] + [f"{unit} running" for unit in started],
        ),
    }
    if not started or host.check:
        return result
    _systemctl(host, "reset-failed", *started)
    _systemctl(host, "start", *started)
    host.sleep(params["settle"])
    failed = [
        unit
        for unit in started
        if _show(host, unit, "ActiveState") != "active" or (_show(host, unit, "NRestarts") or "0") != "0"
    ]
    if failed:
        raise Failed(f"not running {params['settle']} s after its start: {' '.join(failed)}", result)
    return result


def restore(host, params: dict) -> dict:
    """The failed colour's journal read, the colour stopped and given back its files.

    The previous colour's units that start stopped start again.
    """
    app, colour = params["app"], params["colour"]
    units = colour_units(params, colour)
    journal_units = [names.journal_unit(unit) for unit in units]
    _rc, journal, _err = host.run(
        ["journalctl", "--no-pager", "--lines", JOURNAL_LINES] + [f"--unit={unit}" for unit in journal_units]
    )
    stopped, removed, written, before, after = [], [], [], [], []
    if params["switching"]:
        stopped = [unit for unit in units if _is_active(host, unit)]
        if not host.check:
            _systemctl(host, "stop", *units)
    restarted = list(params["restart"])
    if restarted and not host.check:
        _must(host, "start", *restarted)
    if params["switching"]:
        # The other processes' unit files go: an idle colour has none (retire removed them).
        unit_files = [
            os.path.join(params["unit_dir"], name)
            for item in params["extra"]
            for name in names.extra_unit_files(app, item, colour)
        ]
        wanted = {**dict.fromkeys(unit_files), **params["files"]}
        for path, content in wanted.items():
            was = _read(path)
            if was == content:
                continue
            before.append(f"{path}:\n{was}" if was is not None else f"{path}: absent")
            after.append(f"{path}:\n{content}" if content is not None else f"{path}: absent")
            if content is None:
                removed.append(path)
                if not host.check:
                    _remove(path)
            else:
                written.append(path)
                if not host.check:
                    _write(path, content)
        if not host.check:
            _must(host, "daemon-reload")
    return {
        "changed": bool(stopped or restarted or removed or written),
        "journal": journal.rstrip("\r\n"),
        "stopped": stopped,
        "started": restarted,
        "removed": removed,
        "msg": _said(
            host.check,
            [("stopped", stopped), ("started again", restarted), ("written back", written), ("removed", removed)],
        ),
        "diff": _diff(before, after),
    }


def retire(host, params: dict) -> dict:
    """The previous colour drained, stopped, disabled, its other processes' files gone; the serving colour enabled."""
    app, colour, previous, unit_dir = params["app"], params["colour"], params["previous"], params["unit_dir"]
    stop, files = [], []
    if previous:
        if not host.check:
            drain(host, params["drain_timeout"])
        ours = names.colour_pattern(app, previous)
        listed = _listed(host, names.colour_globs(app, previous), RUNNING_STATES)
        running = [unit for unit in listed if ours.match(unit)]
        enabled = []
        for wants in names.WANTS_DIRS:
            try:
                enabled += [unit for unit in os.listdir(os.path.join(unit_dir, wants)) if ours.match(unit)]
            except FileNotFoundError:
                pass
        stop = sorted(set(running + enabled))
        # The colour that starts next writes its own (rollback.yml included).
        theirs = names.extra_file_pattern(app, previous)
        files = sorted(name for name in os.listdir(unit_dir) if theirs.match(name))
    enable = [unit for unit in colour_units(params, colour) if not _is_enabled(host, unit)]
    if not host.check:
        if stop:
            _must(host, "disable", "--quiet", "--now", *stop)
        if files:
            for name in files:
                _remove(os.path.join(unit_dir, name))
            _must(host, "daemon-reload")
        if enable:
            _must(host, "enable", "--quiet", *enable)
    in_use = [params["release_dir"]]
    record = _read(params["other_record"]) if params["other_record"] else None
    if record:
        in_use.append(json.loads(record)["release"]["dir"])
    return {
        "changed": bool(stop or files or enable),
        "stopped": stop,
        "removed": files,
        "enabled": enable,
        "msg": _said(host.check, [("stopped and disabled", stop), ("removed", files), ("enabled at boot", enable)]),
        "diff": _diff(
            [f"{unit} running or enabled" for unit in stop]
            + [f"{unit_dir}/{name}" for name in files]
            + [f"{unit} disabled" for unit in enable],
            [f"{unit} stopped, disabled" for unit in stop] + [f"{unit} enabled" for unit in enable],
        ),
        "ansible_facts": {"asgi_server_releases_in_use": in_use},
    }


def drain(host, timeout: int) -> None:
    """Wait until nginx's old workers are gone, at most timeout seconds (0: as long as they last)."""
    deadline = host.now() + timeout
    while host.run(["pgrep", "--full", SHUTTING_DOWN])[0] == 0:
        if timeout and host.now() >= deadline:
            return
        host.sleep(0.2)


def unchanged(host, params: dict) -> dict:
    """Whether the host serves what the digest describes; a digest file that no longer counts removed."""
    colour = (_read(params["state_file"]) or "").rstrip("\n")
    serving = colour in names.COLOURS and _is_active(host, "nginx.service")
    if serving:
        serving = all(_is_active(host, unit) for unit in colour_units(params, colour))
    recorded = ((_read(params["digest_file"]) or "").rstrip("\n")) if serving else ""
    expected = params["digest"]
    if expected and recorded == expected:
        return {"changed": False, "msg": "unchanged", "removed": [], "ansible_facts": {"asgi_server_unchanged": True}}
    result = {"changed": False, "msg": "", "removed": [], "ansible_facts": {"asgi_server_unchanged": False}}
    was = _read(params["digest_file"])
    if was is not None or os.path.lexists(params["digest_file"]):
        if not host.check:
            _remove(params["digest_file"])
        result.update(
            changed=True,
            msg="forgotten",
            removed=[params["digest_file"]],
            diff={"before_header": params["digest_file"], "before": was or "", "after": ""},
        )
    return result


ACTIONS = {
    "read": read,
    "start": start,
    "stop_one_host": stop_one_host,
    "restore": restore,
    "retire": retire,
    "unchanged": unchanged,
}
# What each action cannot do without.
REQUIRED = {
    "read": ["colour"],
    "start": ["colour"],
    "restore": ["colour"],
    "retire": ["colour", "release_dir"],
    "unchanged": ["state_file", "digest_file"],
}


def check_extra(extra: list[dict]) -> str | None:
    for item in extra:
        if not isinstance(item.get("name"), str) or not item["name"]:
            return f"extra: each item needs a name (got {item!r})"
        if item.get("kind", "service") not in ("service", "timer"):
            return f"extra: {item['name']}: kind must be service or timer"
        if item.get("hosts", "every") not in ("every", "one"):
            return f"extra: {item['name']}: hosts must be every or one"
    return None


ARGUMENT_SPEC = {
    "action": {"type": "str", "required": True, "choices": list(ACTIONS)},
    "app": {"type": "str", "required": True},
    "colour": {"type": "str", "choices": list(names.COLOURS)},
    "previous": {"type": "str", "default": ""},
    "processes": {"type": "int", "default": 1},
    "extra": {"type": "list", "elements": "dict", "default": []},
    "settle": {"type": "int", "default": 5},
    "drain_timeout": {"type": "int", "default": 60},
    "restart": {"type": "list", "elements": "str", "default": []},
    "switching": {"type": "bool", "default": True},
    "files": {"type": "dict", "default": {}},
    "release_dir": {"type": "str"},
    "other_record": {"type": "path"},
    "state_file": {"type": "path"},
    "digest_file": {"type": "path"},
    "digest": {"type": "str", "default": "", "no_log": False},
    "unit_dir": {"type": "path", "default": names.UNIT_DIR},
}


def run(host, params: dict) -> dict:
    """The action's result, with failed and msg when it failed."""
    missing = [name for name in REQUIRED.get(params["action"], []) if not params.get(name)]
    if missing:
        return {"failed": True, "changed": False, "msg": f"action={params['action']} requires {', '.join(missing)}"}
    problem = check_extra(params["extra"])
    if problem:
        return {"failed": True, "changed": False, "msg": problem}
    try:
        return ACTIONS[params["action"]](host, params)
    except Failed as failure:
        return {"changed": False, **failure.result, "failed": True, "msg": failure.msg}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    result = run(Host(module), module.params)
    # A diff only where something changes (or would), and only when asked for.
    if not module._diff or not result.get("changed"):
        result.pop("diff", None)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
