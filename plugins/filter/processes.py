# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The app's other processes and timers a host runs for one colour, with their systemd unit names."""

from __future__ import annotations

from typing import Any

from ansible_collections.django_asgi.rollout.plugins.module_utils import colour_units as names

DOCUMENTATION = r"""
name: release_processes
short_description: The processes and timers a colour of an app host runs, defaults filled in
version_added: 0.1.0
description:
  - Takes I(asgi_server_extra_processes) and returns, in their order, those the host runs (every one with
    C(hosts=every), those with C(hosts=one) only on the host that runs them), then the timers likewise.
  - Each item gets C(kind) (C(service) or C(timer)), C(count), C(hosts), C(stop_timeout), C(unit_file) (the
    file under C(/etc/systemd/system)), C(timer_file) (timers) and C(units), the units to start
    (C(<app>-<name>-<colour>@<n>.service), or the C(.timer)); without O(colour), neither C(unit_file),
    C(timer_file) nor C(units) (what M(django_asgi.rollout.rollout_colour) needs of them has no colour).
  - The names come from the collection's C(colour_units) module utility, which alone spells them.
  - Run after preflight, which checks the items.
options:
  _input:
    description: I(asgi_server_extra_processes).
    type: list
    elements: dict
    required: true
  timers:
    description: I(asgi_server_timers).
    type: list
    elements: dict
    required: true
  app:
    description: The app's name.
    type: str
    required: true
  colour:
    description: The colour, C(blue) or C(green); empty for items without unit names.
    type: str
    required: true
  one_host:
    description: Whether this host runs the items with C(hosts=one).
    type: bool
    required: true
  stop_timeout:
    description: The default I(stop_timeout).
    type: int
    required: true
"""

EXAMPLES = r"""
_asgi_server_extra: >-
  {{ asgi_server_extra_processes | django_asgi.rollout.release_processes(asgi_server_timers, app='demo',
     colour='blue', one_host=true, stop_timeout=30) }}
"""

RETURN = r"""
_value:
  description: The items this host runs, in order, processes first.
  type: list
  elements: dict
"""


def release_processes(
    processes: list[dict[str, Any]],
    timers: list[dict[str, Any]],
    app: str,
    colour: str,
    one_host: bool,
    stop_timeout: int,
) -> list[dict[str, Any]]:
    found = []
    for kind, items in (("service", processes or []), ("timer", timers or [])):
        for item in items:
            hosts = item.get("hosts", "every")
            if hosts == "one" and not one_host:
                continue
            entry = {
                "name": str(item["name"]),
                "kind": kind,
                "command": [str(argument) for argument in item["command"]],
                "hosts": hosts,
                "stop_timeout": int(item.get("stop_timeout", stop_timeout)),
            }
            if kind == "service":
                count = int(item.get("count", 1))
                entry.update(count=count)
            else:
                entry.update(count=1, schedule=str(item["schedule"]))
            if colour:
                files = names.extra_unit_files(app, entry, colour)
                entry.update(unit_file=files[0], units=names.extra_units(app, entry, colour))
                if kind == "timer":
                    entry.update(timer_file=files[1])
            found.append(entry)
    return found


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"release_processes": release_processes}
