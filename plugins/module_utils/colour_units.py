# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The names of a colour's systemd units: the one place the collection spells them.

A colour (blue or green) of an app runs
  - its web server's processes <app>@<colour>.service, <app>@<colour>-2.service ... -N,
    instances of the template unit <app>@.service, each on the socket <colour>[-n].sock;
    the others' drop-in directories link to the first's;
  - each other process <name> as <app>-<name>-<colour>@1.service ... @count, instances of
    <app>-<name>-<colour>@.service;
  - each timer <name> as <app>-<name>-<colour>.timer, which starts <app>-<name>-<colour>.service.
The filter release_processes and the module rollout_colour both read it from here.
"""

from __future__ import annotations

import re

COLOURS = ("blue", "green")
UNIT_DIR = "/etc/systemd/system"
# Where systemctl enable links a unit of the colour (the units' [Install] sections).
WANTS_DIRS = ("multi-user.target.wants", "timers.target.wants")


def other_colour(colour: str) -> str:
    """The colour that is not this one (blue for anything but blue)."""
    return "green" if colour == "blue" else "blue"


def instances(colour: str, processes: int) -> list[str]:
    """The web server's instances of the colour: blue, blue-2 ... blue-N."""
    return [colour] + [f"{colour}-{number}" for number in range(2, int(processes) + 1)]


def template_unit(app: str) -> str:
    """The web server's template unit."""
    return f"{app}@.service"


def web_units(app: str, colour: str, processes: int) -> list[str]:
    """The web server's units of the colour, first process first."""
    return [f"{app}@{instance}.service" for instance in instances(colour, processes)]


def sockets(socket_dir: str, colour: str, processes: int) -> list[str]:
    """The socket of each of the web server's processes of the colour, in the order of web_units."""
    return [f"{socket_dir}/{instance}.sock" for instance in instances(colour, processes)]


def dropin_dir(app: str, colour: str, unit_dir: str = UNIT_DIR) -> str:
    """The drop-in directory of the colour's first process, which the others link to."""
    return f"{unit_dir}/{app}@{colour}.service.d"


def extra_stem(app: str, name: str, colour: str) -> str:
    """What the units of an other process or timer begin with."""
    return f"{app}-{name}-{colour}"


def extra_unit_files(app: str, item: dict, colour: str) -> list[str]:
    """The unit files (under UNIT_DIR) of an other process (its template unit) or a timer (service, then timer)."""
    stem = extra_stem(app, item["name"], colour)
    if item.get("kind", "service") == "timer":
        return [f"{stem}.service", f"{stem}.timer"]
    return [f"{stem}@.service"]


def extra_units(app: str, item: dict, colour: str) -> list[str]:
    """The units to start of an other process (one per instance) or a timer (the .timer)."""
    stem = extra_stem(app, item["name"], colour)
    if item.get("kind", "service") == "timer":
        return [f"{stem}.timer"]
    return [f"{stem}@{number}.service" for number in range(1, int(item.get("count", 1)) + 1)]


def all_extra_units(app: str, extra: list[dict], colour: str) -> list[str]:
    """The units to start of every other process and timer, in order."""
    return [unit for item in extra for unit in extra_units(app, item, colour)]


def journal_unit(unit: str) -> str:
    """The unit whose journal holds a unit's output: a timer's is its service's."""
    return unit[: -len(".timer")] + ".service" if unit.endswith(".timer") else unit


def colour_globs(app: str, colour: str) -> list[str]:
    """Patterns systemctl list-units matches against every unit of the colour."""
    return [
        f"{app}@{colour}.service",
        f"{app}@{colour}-*.service",
        f"{app}-*-{colour}@*.service",
        f"{app}-*-{colour}.service",
        f"{app}-*-{colour}.timer",
    ]


def colour_pattern(app: str, colour: str) -> re.Pattern[str]:
    """Every unit of the colour, whatever its process count and other processes (and none of another app's)."""
    app, colour = re.escape(app), re.escape(colour)
    return re.compile(rf"^{app}(@{colour}(-[0-9]+)?|-[a-z][a-z0-9]*-{colour}(@[0-9]+)?)[.](service|timer)$")


def extra_file_pattern(app: str, colour: str) -> re.Pattern[str]:
    """The unit files of the colour's other processes and timers."""
    app, colour = re.escape(app), re.escape(colour)
    return re.compile(rf"^{app}-[a-z][a-z0-9]*-{colour}(@)?[.](service|timer)$")


def any_colour_globs(app: str, name: str) -> list[str]:
    """Patterns systemctl list-units matches against the units of one other process or timer, of either colour."""
    return [f"{app}-{name}-*@*.service", f"{app}-{name}-*.timer"]


def colour_of_globs(app: str, name: str, colour: str) -> list[str]:
    """Patterns systemctl list-units matches against the units of one other process or timer of the colour."""
    return [f"{extra_stem(app, name, colour)}@*.service", f"{extra_stem(app, name, colour)}.timer"]
