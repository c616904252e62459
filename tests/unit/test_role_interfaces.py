"""Each role's defaults, argument specs and README describe the same variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


SERVER_FILES = sorted((ROOT / "roles" / "asgi_server" / "vars" / "main").glob("server_*.yml"))


@pytest.mark.parametrize("path", SERVER_FILES, ids=lambda path: path.stem)
def test_each_server_is_one_file_with_every_fact_the_role_reads(path: Path):
    kind = path.stem.removeprefix("server_")
    definitions = load(path)
    assert list(definitions) == [f"_asgi_server_definition_{kind}"]
    definition = definitions[f"_asgi_server_definition_{kind}"]
    optional = {"workers_reason", "unit_settings"}
    assert set(definition) - optional == {
        "packages",
        "minimums",
        "workers",
        "max_workers",
        "processes",
        "wrapper",
        "command",
    }
    assert all("==" in package for package in definition["packages"]), "every package is pinned"
    # Each minimum says why, and is one of the server's own packages, which the definition pins no older.
    pins = {canonicalize_name(Requirement(line).name): Version(line.split("==")[1]) for line in definition["packages"]}
    assert definition["minimums"], "the server's own package has a minimum"
    for minimum in definition["minimums"]:
        assert set(minimum) == {"name", "version", "why"} and minimum["why"], minimum
        assert pins[canonicalize_name(minimum["name"])] >= Version(minimum["version"]), minimum
    assert f"bin/{kind} " in definition["command"] and "{{ _asgi_server_socket }}" in definition["command"]
    assert definition["max_workers"] == 0 or definition["workers_reason"]
    # A server that cannot safely run workers of its own still uses every core:
    # one process per CPU, each on its own socket.
    assert definition["processes"] == (1 if definition["max_workers"] == 0 else "{{ _asgi_server_cpu_workers }}")


def test_the_servers_scenario_and_the_readmes_cover_every_server():
    kinds = {path.stem.removeprefix("server_") for path in SERVER_FILES}
    assert kinds == {"uvicorn", "gunicorn", "granian", "daphne", "hypercorn"}
    scenario = load(ROOT / "molecule" / "servers" / "molecule.yml")
    assert {host["asgi_server_kind"] for host in scenario["provisioner"]["inventory"]["host_vars"].values()} == kinds
    for readme in (ROOT / "README.md", ROOT / "roles" / "asgi_server" / "README.md"):
        header = next(line for line in readme.read_text().splitlines() if line.startswith("| | uvicorn |"))
        assert {cell.strip() for cell in header.strip("|").split("|")} - {""} == kinds, readme


# Where the docs list the servers a user can pick; each must name every definition file.
SERVER_LISTS = {
    "galaxy.yml": lambda text: yaml.safe_load(text)["description"],
    "README.md": lambda text: text.split("\n## ", 1)[0],
    "inventories/example/group_vars/app_servers/main.yml": lambda text: text.split("asgi_server_kind (", 1)[1][:200],
}


@pytest.mark.parametrize("path", sorted(SERVER_LISTS))
def test_each_list_of_servers_in_the_docs_names_every_definition(path: str):
    text = " ".join(SERVER_LISTS[path]((ROOT / path).read_text()).split())
    kinds = [server.stem.removeprefix("server_") for server in SERVER_FILES]
    missing = sorted(kind for kind in kinds if kind not in text)
    assert not missing, f"{path} does not name {missing}"
