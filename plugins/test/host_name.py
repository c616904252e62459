# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Jinja test for the host names a site answers to, with no library beyond Python's."""

from __future__ import annotations

import ipaddress
import re

DOCUMENTATION = r"""
name: host_name
short_description: Is the value a host name nginx and Django both accept
version_added: 0.1.0
description:
  - True for a DNS name (C(app.example.com)), a name with a leading wildcard
    (C(*.example.com)) or dot (C(.example.com), Django's and nginx's form for a
    domain and its subdomains), or an IPv4 or IPv6 address.
  - Refuses what would change the meaning of an nginx C(server_name) line or a
    Django C(ALLOWED_HOSTS) entry, such as spaces, semicolons, braces or C(*) alone.
options:
  _input:
    description: The value to test.
    type: raw
    required: true
"""

EXAMPLES = r"""
- ansible.builtin.assert:
    that: item is django_asgi.rollout.host_name
  loop: "{{ django_app_allowed_hosts }}"
"""

RETURN = r"""
_value:
  description: Whether the value is a host name or an IP address.
  type: bool
"""

_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"^(\*\.|\.)?{_LABEL}(\.{_LABEL})*\.?$")


def host_name(value: object) -> bool:
    if not isinstance(value, str) or not value or len(value) > 253:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return bool(_DNS_NAME.match(value))
    return True


class TestModule:
    def tests(self) -> dict[str, object]:
        return {"host_name": host_name}
