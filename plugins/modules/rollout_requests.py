#!/usr/bin/python
# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the users of a host got over time windows, read from nginx's JSON request log."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_requests
short_description: Count the requests, 5xx answers and request times of each release over time windows
description:
  - Reads the JSON request log nginx_proxy has nginx write (one object a line, with C(time),
    C(status), C(request_time), C(uri), C(colour) and C(release)) from its end backwards, and the
    file logrotate rotated last (C(PATH.1)) when a window reaches back before the current one.
  - For each window (a name, C(since) and C(until) as Unix times), and each release seen in it,
    returns the number of requests, of 5xx answers, the p95 request time and the request times
    as milliseconds with their counts, so figures of several hosts can be merged.
  - WebSocket upgrades (status 101, which last as long as the session) and the paths in
    O(exclude_paths) (the health path the load balancers poll) are left out.
  - Reads only; nothing on the host changes.
version_added: 0.3.0
author: django_asgi.rollout maintainers (@django-asgi)
options:
  path:
    description: Absolute path of the JSON request log.
    type: path
    required: true
  windows:
    description: Each window's name, with C(since) and C(until) (Unix times, seconds).
    type: dict
    required: true
  exclude_paths:
    description: Request paths (C(uri), exact) not counted.
    type: list
    elements: str
    default: []
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
- name: Read what the host's users got over the last 30 s
  django_asgi.rollout.rollout_requests:
    path: /var/log/nginx/mysite.requests.json
    windows:
      canary:
        since: "{{ now(utc=true).timestamp() - 30 }}"
        until: "{{ now(utc=true).timestamp() }}"
    exclude_paths: [/-/health]
  register: requests
"""

RETURN = r"""
windows:
  description: >-
    Each window by name, and in it each release by id: C(requests), C(errors) (5xx answers),
    C(p95_ms), and C(latency_ms) (each request time in whole milliseconds, with how many took it).
  returned: always
  type: dict
  sample: {canary: {"7f3c2e": {requests: 412, errors: 75, p95_ms: 31, latency_ms: {"4": 200, "31": 212}}}}
lines:
  description: Lines read, and of them those that were not a request of the log's format.
  returned: always
  type: dict
  sample: {read: 5120, unreadable: 0}
"""

import json  # noqa: E402  (ansible-test wants the documentation first)
import os  # noqa: E402
import statistics  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

BLOCK = 65536
# Lines are written in the order each nginx worker ends its requests, buffered
# per worker: a line older than this before a window's start ends the reading.
SKEW = 10.0


def lines_backwards(path: str):
    """The file's lines, last first (bytes, without the newline); nothing when there is no file."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        rest = b""
        while position > 0:
            size = min(BLOCK, position)
            position -= size
            handle.seek(position)
            block = handle.read(size) + rest
            lines = block.split(b"\n")
            rest = lines.pop(0)
            for line in reversed(lines):
                if line:
                    yield line
        if rest:
            yield rest


def p95(latency_ms: dict[int, int]) -> int:
    """The 95th percentile of request times given as {milliseconds: count} (nearest rank)."""
    ordered = sorted(latency_ms.items())
    total = sum(count for _ms, count in ordered)
    if total == 0:
        return 0
    rank = max(int(-(-95 * total // 100)), 1)  # ceil(0.95 * total)
    seen = 0
    for ms, count in ordered:
        seen += count
        if seen >= rank:
            return ms
    return ordered[-1][0]


def read_windows(path: str, windows: dict[str, tuple[float, float]], exclude: set[str]) -> tuple[dict, dict]:
    earliest = min((since for since, _until in windows.values()), default=0.0)
    counts: dict[str, dict[str, dict]] = {name: {} for name in windows}
    read = unreadable = 0
    for candidate in (path, path + ".1"):
        reached_start = False
        for line in lines_backwards(candidate):
            read += 1
            try:
                entry = json.loads(line)
                at = float(entry["time"])
                status = int(entry["status"])
                seconds = float(entry["request_time"])
            except (ValueError, KeyError, TypeError):
                unreadable += 1
                continue
            if at < earliest - SKEW:
                reached_start = True
                break
            if status == 101 or entry.get("uri") in exclude:
                continue
            release = str(entry.get("release") or "")
            for name, (since, until) in windows.items():
                if since <= at < until:
                    figures = counts[name].setdefault(release, {"requests": 0, "errors": 0, "latency_ms": {}})
                    figures["requests"] += 1
                    figures["errors"] += status >= 500
                    ms = round(seconds * 1000)
                    figures["latency_ms"][ms] = figures["latency_ms"].get(ms, 0) + 1
        if reached_start:
            break
    for releases in counts.values():
        for figures in releases.values():
            figures["p95_ms"] = p95(figures["latency_ms"])
            if figures["requests"] > 1:
                figures["median_ms"] = statistics.median_low(
                    [ms for ms, count in figures["latency_ms"].items() for _copy in range(count)]
                )
            else:
                figures["median_ms"] = next(iter(figures["latency_ms"]), 0)
            figures["latency_ms"] = {str(ms): count for ms, count in sorted(figures["latency_ms"].items())}
    return counts, {"read": read, "unreadable": unreadable}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "windows": {"type": "dict", "required": True},
            "exclude_paths": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    if not os.path.isabs(path):
        module.fail_json(msg=f"path {path}: is not an absolute path")
    windows = {}
    for name, window in module.params["windows"].items():
        try:
            since, until = float(window["since"]), float(window["until"])
        except (KeyError, TypeError, ValueError):
            module.fail_json(msg=f"window {name}: needs since and until, as Unix times (got {window!r})")
        if until < since:
            module.fail_json(msg=f"window {name}: until ({until}) is before since ({since})")
        windows[str(name)] = (since, until)
    try:
        counts, lines = read_windows(path, windows, set(module.params["exclude_paths"]))
    except OSError as error:
        module.fail_json(msg=f"{path}: {error}")
    module.exit_json(changed=False, windows=counts, lines=lines)


if __name__ == "__main__":
    main()
