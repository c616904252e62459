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
        "listen",
        "command",
    }
    assert all("==" in package for package in definition["packages"]), "every package is pinned"
    # Each minimum says why, and is one of the server's own packages, which the definition pins no older.
    pins = {canonicalize_name(Requirement(line).name): Version(line.split("==")[1]) for line in definition["packages"]}
    assert definition["minimums"], "the server's own package has a minimum"
    for minimum in definition["minimums"]:
        assert set(minimum) == {"name", "version", "why"} and minimum["why"], minimum
        assert pins[canonicalize_name(minimum["name"])] >= Version(minimum["version"]), minimum
    assert f"bin/{kind} " in definition["command"]
    # It listens where its listen field says: on the colour's socket in the role, on TCP in the bench.
    listen = definition["listen"]
    assert set(listen) == {"unix", "tcp"} and "{socket}" in listen["unix"], listen
    assert "{host}" in listen["tcp"] and "{port}" in listen["tcp"] and "{socket}" not in listen["tcp"], listen
    assert "{{ _asgi_server_listen }}" in definition["command"] and "_asgi_server_socket" not in definition["command"]
    assert definition["max_workers"] == 0 or definition["workers_reason"]
    # A server that cannot safely run workers of its own still uses every core:
    # one process per CPU, each on its own socket.
    assert definition["processes"] == (1 if definition["max_workers"] == 0 else "{{ _asgi_server_cpu_workers }}")


KINDS = sorted(path.stem.removeprefix("server_") for path in SERVER_FILES)


def scenario_servers(scenario: dict) -> dict[str, str]:
    """The servers scenario's hosts and the server each runs (its host_vars' asgi_server_kind)."""
    host_vars = scenario["provisioner"]["inventory"]["host_vars"]
    assert {platform["name"] for platform in scenario["platforms"]} == set(host_vars), "a platform per host"
    return {name: variables["asgi_server_kind"] for name, variables in host_vars.items()}


def readme_servers(readme: str) -> list[str]:
    """The servers of the README's table of servers, one row each, in its section "The servers"."""
    section = readme.split("\n## The servers\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows and rows[0].split("|")[1].strip() == "server", "the table's first column names the server"
    return [row.split("|")[1].strip().strip("`") for row in rows[2:]]


def missing_servers(kinds: list[str], scenario: dict, readme: str) -> list[str]:
    """What a server needs besides its definition file, and what names no definition: empty when all agree."""
    hosts = scenario_servers(scenario)
    rows = readme_servers(readme)
    faults = [f"server_{kind}.yml has no host in molecule/servers" for kind in kinds if kind not in hosts.values()]
    faults += [f"server_{kind}.yml has no row in the README's table of servers" for kind in kinds if kind not in rows]
    faults += [
        f"molecule/servers host {host} runs {kind}, which no server_*.yml defines"
        for host, kind in hosts.items()
        if kind not in kinds
    ]
    faults += [
        f"the README's table of servers has a row for {row}, which no server_*.yml defines"
        for row in rows
        if row not in kinds
    ]
    faults += [f"the README's table of servers has {row} twice" for row in sorted(set(rows)) if rows.count(row) > 1]
    return faults


def test_a_server_is_its_definition_a_servers_scenario_host_and_a_readme_row():
    assert KINDS, "the role defines servers"
    scenario = load(ROOT / "molecule" / "servers" / "molecule.yml")
    assert not missing_servers(KINDS, scenario, (ROOT / "README.md").read_text())


def test_a_definition_without_its_host_and_row_or_a_host_or_row_without_a_definition_fails():
    scenario = load(ROOT / "molecule" / "servers" / "molecule.yml")
    readme = (ROOT / "README.md").read_text()
    now = set(missing_servers(KINDS, scenario, readme))
    # A kind no definition file can have (they are [a-z0-9]+), standing for a sixth server added alone.
    assert set(missing_servers([*KINDS, "the-sixth"], scenario, readme)) - now == {
        "server_the-sixth.yml has no host in molecule/servers",
        "server_the-sixth.yml has no row in the README's table of servers",
    }
    host, kind = next(iter(scenario_servers(scenario).items()))
    assert set(missing_servers([k for k in KINDS if k != kind], scenario, readme)) - now == {
        f"molecule/servers host {host} runs {kind}, which no server_*.yml defines",
        f"the README's table of servers has a row for {kind}, which no server_*.yml defines",
    }


# Where the docs once listed the servers a user can pick, and went stale: they
# point to the definitions or to the README's table of servers instead.
PROSE = [
    "README.md",
    "galaxy.yml",
    *sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("roles/*/README.md")),
    *sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("roles/asgi_server/meta/*.yml")),
    "roles/asgi_server/defaults/main.yml",
    "roles/asgi_server/vars/main/main.yml",
    *sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("inventories/example/**/*.yml")),
    *sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("examples/*/README.md")),
]


def server_lists(text: str, kinds: list[str], window: int = 16) -> list[str]:
    """Runs of prose (tables and code blocks left out) naming most servers within a few words: a list of them."""
    prose, fenced = [], False
    for line in text.splitlines():
        fenced ^= line.lstrip().startswith("```")
        if not fenced and not line.lstrip().startswith(("|", "```")):
            prose.append(line)
    words = " ".join(prose).split()
    found = []
    for start in range(len(words)):
        span = " ".join(words[start : start + window])
        if sum(kind in span for kind in kinds) >= min(4, len(kinds)):
            found.append(span)
    return found


@pytest.mark.parametrize("path", PROSE)
def test_no_prose_lists_the_servers(path: str):
    lists = server_lists((ROOT / path).read_text(), KINDS)
    assert not lists, f"{path} lists the servers; point to the README's table of servers instead: {lists[0]}"


def test_a_list_of_the_servers_in_prose_is_found():
    assert server_lists("under uvicorn, gunicorn, granian, daphne or\nhypercorn as units", KINDS)
    assert not server_lists("the lab runs uvicorn, daphne and hypercorn", KINDS)
    assert not server_lists("| uvicorn | gunicorn | granian | daphne | hypercorn |", KINDS)
