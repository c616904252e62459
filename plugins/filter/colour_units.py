# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A colour's web server units, their sockets and drop-ins, named by the collection's one naming scheme."""

from __future__ import annotations

from typing import Any

from ansible_collections.django_asgi.rollout.plugins.module_utils import colour_units as names

DOCUMENTATION = r"""
name: colour_units
short_description: The web server units of a colour of an app, their sockets and drop-ins
version_added: 0.3.0
description:
  - Takes the app's name and returns what its web server runs as on the colour, from the collection's
    C(colour_units) module utility, which alone spells the names.
  - C(template_unit) (C(<app>@.service)), C(instances) (C(blue), C(blue-2) ...), C(units)
    (C(<app>@blue.service), C(<app>@blue-2.service) ...), C(sockets) (C(<socket_dir>/blue.sock) ...),
    C(dropin_dir) (the first process's drop-in directory) and C(dropin_links) (the other processes' drop-in
    directories, as M(django_asgi.rollout.rollout_files) links to the first's).
options:
  _input:
    description: The app's name.
    type: str
    required: true
  colour:
    description: The colour, C(blue) or C(green).
    type: str
    required: true
  processes:
    description: How many processes the web server runs on the colour.
    type: int
    default: 1
  socket_dir:
    description: The directory of the sockets.
    type: str
    default: ""
"""

EXAMPLES = r"""
_asgi_server_colour_units: >-
  {{ 'demo' | django_asgi.rollout.colour_units('blue', processes=2, socket_dir='/run/demo') }}
# units: [demo@blue.service, demo@blue-2.service], sockets: [/run/demo/blue.sock, /run/demo/blue-2.sock]
"""

RETURN = r"""
_value:
  description: C(template_unit), C(instances), C(units), C(sockets), C(dropin_dir) and C(dropin_links).
  type: dict
"""


def colour_units(app: str, colour: str, processes: int = 1, socket_dir: str = "") -> dict[str, Any]:
    units = names.web_units(app, colour, processes)
    dropin = names.dropin_dir(app, colour)
    return {
        "template_unit": names.template_unit(app),
        "instances": names.instances(colour, processes),
        "units": units,
        "sockets": names.sockets(socket_dir, colour, processes),
        "dropin_dir": dropin,
        "dropin_links": [{"path": f"{names.UNIT_DIR}/{unit}.d", "state": "link", "src": dropin} for unit in units[1:]],
    }


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"colour_units": colour_units}
