# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Jinja tests for addresses in the inventory, with no library beyond Python's."""

from __future__ import annotations

import ipaddress

DOCUMENTATION = r"""
name: ip_network
short_description: Is the value an IP address or a CIDR network
version_added: 0.1.0
description:
  - True for an IPv4 or IPv6 address (C(10.0.0.5)) or network in CIDR form (C(10.0.0.0/24)),
    the forms nginx's C(set_real_ip_from) and the servers' trust lists accept.
  - Host bits set in a CIDR (C(10.0.0.5/24)) are refused, since they usually hide a typo.
options:
  _input:
    description: The value to test.
    type: raw
    required: true
"""

EXAMPLES = r"""
- ansible.builtin.assert:
    that: item is django_asgi.rollout.ip_network
  loop: "{{ trusted_proxies }}"
"""

RETURN = r"""
_value:
  description: Whether the value is an IP address or a CIDR network.
  type: bool
"""


def ip_network(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


class TestModule:
    def tests(self) -> dict[str, object]:
        return {"ip_network": ip_network}
