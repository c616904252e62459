"""ansible-doc shows every option of every role's entry points, as users see them.

The collection is put on a collections path of its own (a symlink in a
temporary directory) and ansible-doc runs outside the repository, so neither
the repository's ansible.cfg nor scripts/bootstrap's symlink is needed.
test_role_interfaces.py checks that the specs, defaults and READMEs agree;
this checks what ansible-doc makes of the specs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "django_asgi.rollout"
NAMESPACE, NAME = COLLECTION.split(".")
ROLES = sorted(path.parent.parent.name for path in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"


def spec_entry_points(role: str) -> dict[str, dict]:
    return yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


def option_paths(options: dict | None, prefix: str = "") -> dict[str, bool]:
    """Every option and suboption (parent/child) with whether it is required."""
    found = {}
    for name, option in (options or {}).items():
        found[prefix + name] = bool(option.get("required"))
        found.update(option_paths(option.get("options"), f"{prefix}{name}/"))
    return found


@pytest.fixture(scope="module")
def ansible_doc(tmp_path_factory):
    """Run ansible-doc -t role on the roles, with the collection on its own collections path."""
    workdir = tmp_path_factory.mktemp("ansible-doc")
    namespace = workdir / "collections" / "ansible_collections" / NAMESPACE
    namespace.mkdir(parents=True)
    (namespace / NAME).symlink_to(ROOT, target_is_directory=True)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_") or key == "ANSIBLE_HOME"
    }
    environment.update(
        ANSIBLE_COLLECTIONS_PATH=str(workdir / "collections"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"
    )

    def run(*arguments: str) -> str:
        result = subprocess.run(  # noqa: S603  (ansible-doc from this venv, arguments from the repository)
            [str(ANSIBLE_DOC), "-t", "role", *arguments],
            cwd=workdir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "ERROR" not in result.stderr, result.stderr
        return result.stdout

    return run


@pytest.fixture(scope="module")
def role_json(ansible_doc) -> dict:
    return json.loads(ansible_doc("--json", *(f"{COLLECTION}.{role}" for role in ROLES)))


@pytest.fixture(scope="module")
def role_text(ansible_doc) -> dict[str, dict[str, str]]:
    """The text ansible-doc prints, by role and entry point."""
    text = ansible_doc(*(f"{COLLECTION}.{role}" for role in ROLES))
    pages: dict[str, dict[str, str]] = {}
    role = entry = None
    for line in text.splitlines():
        if heading := re.match(rf"> ROLE: \*?{re.escape(COLLECTION)}\.(\w+)\*?", line):
            role, entry = heading.group(1), None
            pages[role] = {}
        elif heading := re.match(r"ENTRY POINT: \*?(\w+)\*?", line):
            entry = heading.group(1)
            pages[role][entry] = ""
        elif role and entry:
            pages[role][entry] += line + "\n"
    return pages


def test_every_role_of_the_collection_is_listed(ansible_doc):
    listing = ansible_doc("--list", "--json", COLLECTION)
    assert sorted(json.loads(listing)) == [f"{COLLECTION}.{role}" for role in ROLES]


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_reads_every_option_of_every_entry_point(role, role_json):
    documented = role_json[f"{COLLECTION}.{role}"]["entry_points"]
    specs = spec_entry_points(role)
    assert set(documented) == set(specs)
    for entry, spec in specs.items():
        assert option_paths(documented[entry].get("options")) == option_paths(spec.get("options")), entry
        assert documented[entry]["short_description"] == spec["short_description"]


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_shows_every_option_marked_required_or_not(role, role_text):
    specs = spec_entry_points(role)
    assert set(role_text.get(role, {})) == set(specs)
    for entry, spec in specs.items():
        page = role_text[role][entry]
        for path, required in option_paths(spec.get("options")).items():
            name = path.rsplit("/", 1)[-1]
            # ansible-doc puts "=" before a required option's name and "-" before the others.
            mark = "=" if required else "-"
            assert re.search(rf"^\s*{mark} {re.escape(name)}(\s|$)", page, re.MULTILINE), (
                f"{role} {entry}: {path} not shown with {mark!r}:\n{page}"
            )
