"""Each role's defaults, argument specs and README describe the same variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(path.parent.parent.name for path in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
LAB_ROLES = sorted(path.parent.parent for path in (ROOT / "lab" / "roles").glob("*/meta/argument_specs.yml"))


def role_dirs() -> list[Path]:
    return [ROOT / "roles" / name for name in ROLES] + LAB_ROLES


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", role_dirs(), ids=lambda path: path.name)
def test_defaults_are_exactly_the_optional_main_options(role: Path):
    defaults = set(load(role / "defaults" / "main.yml"))
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    required = {name for name, option in options.items() if option.get("required")}
    assert defaults == set(options) - required
    assert not required & defaults


@pytest.mark.parametrize("role", role_dirs(), ids=lambda path: path.name)
def test_every_option_of_every_entry_point_is_in_the_readme(role: Path):
    readme = (role / "README.md").read_text()
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]
    missing = {name for entry in specs.values() for name in entry.get("options", {}) if f"`{name}`" not in readme}
    assert not missing


@pytest.mark.parametrize("role", role_dirs(), ids=lambda path: path.name)
def test_every_option_has_a_type_and_a_description(role: Path):
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry in specs.values():
        for name, option in entry.get("options", {}).items():
            assert option.get("type"), name
            assert option.get("description"), name
