# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A digest of everything that goes into one app host: two equal digests make the same host."""

from __future__ import annotations

DOCUMENTATION = r"""
name: rollout_digest
short_description: A digest of everything that goes into one app host's state
version_added: 0.3.0
description:
  - The sha256 of the collection's own files (its roles, playbooks and plugins), of the value on this
    host of every option that the argument specs of the roles named declare and the inventory, the
    command line or the play sets (role defaults are the collection's files), and of O(extra).
  - C(playbooks/site.yml) records it on an app host once the host serves what the run made, and
    skips the next run's work on a host whose record matches (C(rollout_force) runs everything).
options:
  _terms:
    description: Names of the collection's roles whose options count.
    type: list
    elements: str
    required: true
  exclude:
    description: Options left out (the ones the playbook passes between roles, made of what counts already).
    type: list
    elements: str
    default: []
  extra:
    description: What else goes into the host, such as the release id and the wheelhouse key.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- ansible.builtin.set_fact:
    rollout_digest: >-
      {{ lookup('django_asgi.rollout.rollout_digest', 'django_app', 'asgi_server', 'nginx_proxy',
                extra={'release': django_app_packaged.release}) }}
"""

RETURN = r"""
_raw:
  description: One hex sha256 digest.
  type: list
  elements: str
"""

import hashlib  # noqa: E402  (ansible-test wants the documentation first)
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

_ROOT = Path(__file__).resolve().parents[2]
_TREES = ("roles", "playbooks", "plugins")


def collection_digest(root: Path) -> str:
    """The collection's roles, playbooks and plugins: what a run does with the options."""
    digest = hashlib.sha256()
    for tree in _TREES:
        for path in sorted((root / tree).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def option_names(root: Path, role: str) -> tuple[str, ...]:
    """Every option of every entry point of the role's argument spec."""
    spec = yaml.safe_load((root / "roles" / role / "meta" / "argument_specs.yml").read_text())
    names: set[str] = set()
    for entry in spec["argument_specs"].values():
        names.update(entry.get("options") or {})
    return tuple(sorted(names))


def digest_of(collection: str, options: dict, extra: dict) -> str:
    document = {"collection": collection, "options": options, "extra": extra}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        exclude = set(self.get_option("exclude"))
        options = {}
        for role in terms:
            for name in option_names(_ROOT, role):
                if name not in exclude and name in variables:
                    options[name] = self._templar.template(variables[name])
        return [digest_of(collection_digest(_ROOT), options, self.get_option("extra"))]
