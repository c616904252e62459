"""Each role's README gives every default as defaults/main.yml has it, and an example playbook that names real roles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTION_ROLES = sorted(path.parent for path in (ROOT / "roles").glob("*/README.md"))
LAB_ROLES = sorted(path.parent for path in (ROOT / "lab" / "roles").glob("*/README.md"))
# A table row of the role variables: | `name` | default | description |
TABLE_ROW = re.compile(r"^\| `(?P<name>[a-z0-9_]+)` \| (?P<default>.*?) \| .*\|$")


def readme(role: Path) -> str:
    return (role / "README.md").read_text()


def documented_defaults(role: Path) -> dict[str, str]:
    rows = (TABLE_ROW.match(line) for line in readme(role).splitlines())
    return {row["name"]: row["default"] for row in rows if row}


def example_plays(role: Path) -> list:
    """The YAML blocks of the README's Example section (## Example, ## Example playbook)."""
    section = re.search(r"^## Example[^\n]*\n(?P<body>.*?)(?=^## |\Z)", readme(role), re.MULTILINE | re.DOTALL)
    assert section, f"{role.name}: no '## Example' section"
    blocks = re.findall(r"^```yaml\n(.*?)^```", section["body"], re.MULTILINE | re.DOTALL)
    assert blocks, f"{role.name}: no yaml block in its Example section"
    return [play for block in blocks for play in yaml.safe_load(block)]


def role_references(node) -> list[tuple[str, str]]:
    """(role name, tasks_from) of every include_role, import_role and roles: entry under node."""
    found = []
    if isinstance(node, dict):
        for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
            if key in node:
                found.append((node[key]["name"], node[key].get("tasks_from", "main")))
        for entry in node.get("roles", []):
            found.append((entry["role"] if isinstance(entry, dict) else entry, "main"))
        for value in node.values():
            found += role_references(value)
    elif isinstance(node, list):
        for item in node:
            found += role_references(item)
    return found


def role_dir(name: str) -> Path:
    if name.startswith("django_asgi.rollout."):
        return ROOT / "roles" / name.removeprefix("django_asgi.rollout.")
    return ROOT / "lab" / "roles" / name


@pytest.mark.parametrize("role", COLLECTION_ROLES + LAB_ROLES, ids=lambda path: path.name)
def test_every_default_is_documented_as_it_is(role: Path):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    documented = documented_defaults(role)
    for name, value in defaults.items():
        assert name in documented, f"{name}: no row in the README's table"
        cell = documented[name].replace("\\|", "|").strip("`")
        assert yaml.safe_load(cell) == value, f"{name}: README says {documented[name]}, defaults/main.yml {value!r}"


@pytest.mark.parametrize("role", COLLECTION_ROLES + LAB_ROLES, ids=lambda path: path.name)
def test_the_example_playbook_uses_the_role_and_real_entry_points(role: Path):
    plays = example_plays(role)
    assert all(isinstance(play, dict) and play.get("hosts") for play in plays), "every play names its hosts"
    references = role_references(plays)
    assert role.name in {role_dir(name).name for name, _tasks_from in references}, "the example uses its own role"
    for name, tasks_from in references:
        assert (role_dir(name) / "tasks" / f"{tasks_from}.yml").is_file(), f"{name}: no tasks/{tasks_from}.yml"


@pytest.mark.parametrize("role", COLLECTION_ROLES, ids=lambda path: path.name)
def test_collection_roles_are_named_by_their_full_name(role: Path):
    names = {name for name, _tasks_from in role_references(example_plays(role))}
    assert all(name.startswith("django_asgi.rollout.") for name in names), names
