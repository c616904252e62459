"""inventories/example, as Ansible reads it, gives every role what it requires and keeps its secrets encrypted."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories" / "example"
VAULT_FILE = EXAMPLE / "group_vars" / "app_servers" / "vault.yml"
PASSWORD_FILE = EXAMPLE / "vault-password-EXAMPLE-ONLY.txt"
# The roles site.yml's preflight play checks on each group, against their main entry point.
APP_ROLES = ("django_app", "asgi_server", "nginx_proxy")
LOAD_BALANCER_ROLES = ("load_balancer",)


def ansible_inventory(*arguments: str) -> subprocess.CompletedProcess:
    """Runs the ansible-inventory beside this Python (the project's .venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "ansible-inventory"
    executable = str(beside) if beside.exists() else shutil.which("ansible-inventory")
    assert executable, "ansible-inventory not found: run scripts/bootstrap"
    environment = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "NO_COLOR": "1"}
    return subprocess.run(  # noqa: S603  (fixed arguments, the project's own tool)
        [executable, "-i", str(EXAMPLE / "hosts.yml"), "--list", *arguments],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def inventory() -> dict:
    result = ansible_inventory("--vault-password-file", str(PASSWORD_FILE))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def group_hosts(inventory: dict, group: str) -> list[str]:
    return inventory.get(group, {}).get("hosts", [])


def main_options(role: str) -> dict:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def wired_options() -> set[str]:
    """The options the playbooks pass from one role to the next, which no inventory sets (the check play's list)."""
    plays = yaml.safe_load((ROOT / "playbooks" / "plays" / "check.yml").read_text())
    return set(plays[0]["vars"]["_rollout_wired_options"])


def required_options(roles: tuple[str, ...]) -> set[str]:
    required = {name for role in roles for name, option in main_options(role).items() if option.get("required")}
    return required - wired_options()


def load_network_test():
    spec = importlib.util.spec_from_file_location("network", ROOT / "plugins" / "test" / "network.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_groups_site_yml_runs_on_have_hosts(inventory):
    assert len(group_hosts(inventory, "app_servers")) >= 2
    assert len(group_hosts(inventory, "load_balancers")) >= 1


@pytest.mark.parametrize(("group", "roles"), [("app_servers", APP_ROLES), ("load_balancers", LOAD_BALANCER_ROLES)])
def test_every_host_has_what_its_roles_require(inventory, group, roles):
    required = required_options(roles)
    if group == "app_servers":
        assert "django_app_name" in required
    for host in group_hosts(inventory, group):
        host_vars = inventory["_meta"]["hostvars"][host]
        missing = sorted(name for name in required if host_vars.get(name) in (None, "", [], {}))
        assert not missing, f"{host} lacks {missing}"
        if group == "app_servers":
            # The code comes from a directory or from git, one of the two.
            assert bool(host_vars.get("django_app_source")) != bool(host_vars.get("django_app_source_repo")), host


@pytest.mark.parametrize(("group", "roles"), [("app_servers", APP_ROLES), ("load_balancers", LOAD_BALANCER_ROLES)])
def test_every_value_with_choices_is_one_of_them(inventory, group, roles):
    options = {name: option for role in roles for name, option in main_options(role).items()}
    for host in group_hosts(inventory, group):
        for name, value in inventory["_meta"]["hostvars"][host].items():
            choices = options.get(name, {}).get("choices")
            assert choices is None or value in choices, f"{host}: {name}={value!r} is not one of {choices}"


def test_the_load_balancers_and_app_hosts_share_the_app_name(inventory):
    hostvars = inventory["_meta"]["hostvars"]
    names = {hostvars[host].get("django_app_name") for host in hostvars}
    assert len(names) == 1
    assert None not in names


def test_the_app_hosts_run_different_servers(inventory):
    hostvars = inventory["_meta"]["hostvars"]
    kinds = {hostvars[host].get("asgi_server_kind", "uvicorn") for host in group_hosts(inventory, "app_servers")}
    assert kinds == {"uvicorn", "daphne", "hypercorn"}


def test_the_trusted_proxies_are_addresses_or_networks(inventory):
    network = load_network_test()
    for host in group_hosts(inventory, "app_servers"):
        proxies = inventory["_meta"]["hostvars"][host].get("nginx_proxy_trusted_proxies", [])
        assert len(proxies) == len(group_hosts(inventory, "load_balancers")), host
        assert all(network.ip_network(proxy) for proxy in proxies), proxies


def test_tls_certificate_and_key_are_given_together(inventory):
    for host in group_hosts(inventory, "app_servers"):
        host_vars = inventory["_meta"]["hostvars"][host]
        assert bool(host_vars.get("nginx_proxy_tls_certificate")) == bool(
            host_vars.get("nginx_proxy_tls_certificate_key")
        ), host


def test_the_environment_resolves_from_the_inventory_and_the_vault(inventory):
    """Every template in django_app_env names a variable the host has: no vault_* name is missing."""
    templates = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701  (not HTML)
    for host in group_hosts(inventory, "app_servers"):
        host_vars = inventory["_meta"]["hostvars"][host]
        for name, value in host_vars["django_app_env"].items():
            rendered = templates.from_string(str(value)).render(host_vars)
            assert "{{" not in rendered, f"{host}: {name}"


def test_the_vault_file_is_encrypted():
    text = VAULT_FILE.read_text()
    header, *payload = text.splitlines()
    assert header.startswith("$ANSIBLE_VAULT;1.")
    assert payload
    assert all(line and set(line) <= set("0123456789abcdef") for line in payload)
    assert "vault_" not in text


def test_the_inventory_cannot_be_read_without_the_vault_password():
    result = ansible_inventory()
    assert result.returncode != 0
    assert "vault" in result.stderr.lower()


def test_the_vault_holds_the_secrets_the_plain_files_name(inventory):
    """The vault_* names the plain vars files use are the ones the vault defines."""
    plain = [
        path
        for path in sorted((EXAMPLE / "group_vars").rglob("*.yml")) + sorted((EXAMPLE / "host_vars").rglob("*.yml"))
        if path != VAULT_FILE
    ]
    referenced = {name for path in plain for name in re.findall(r"\bvault_\w+", path.read_text())}
    defined = {
        name for host_vars in inventory["_meta"]["hostvars"].values() for name in host_vars if name.startswith("vault_")
    }
    assert referenced
    assert referenced <= defined


def test_the_example_password_says_it_is_one():
    assert "EXAMPLE-ONLY" in PASSWORD_FILE.name
    assert PASSWORD_FILE.read_text().startswith("example-only-")
    assert "EXAMPLE-ONLY" in (EXAMPLE / "README.md").read_text()


# Several apps on one fleet: a second app is a variables file passed with -e @.
SECOND_APP = EXAMPLE / "apps" / "blog.yml"
# True of the hosts whichever app they serve: the inventory's alone.
SHARED_BY_THE_APPS = {"nginx_proxy_trusted_proxies"}
ROLE_PREFIXES = ("django_app_", "asgi_server_", "nginx_proxy_", "load_balancer_")


def test_the_second_app_sets_every_app_variable_the_inventory_sets():
    """What the file left out, the second app would take from the first (extra variables do not reset the rest)."""
    second = yaml.safe_load(SECOND_APP.read_text())
    plain = [
        path
        for path in sorted((EXAMPLE / "group_vars").rglob("*.yml")) + sorted((EXAMPLE / "host_vars").rglob("*.yml"))
        if path != VAULT_FILE
    ]
    inventory_names = {name for path in plain for name in (yaml.safe_load(path.read_text()) or {})}
    app_names = {name for name in inventory_names if name.startswith(ROLE_PREFIXES)} - SHARED_BY_THE_APPS
    assert app_names, "the example's inventory sets no app variable"
    missing = sorted(app_names - set(second))
    assert not missing, f"{SECOND_APP.name} leaves {missing} to the first app's values"
    assert not SHARED_BY_THE_APPS & set(second)


def test_the_second_app_has_its_own_name_and_host_names(inventory):
    second = yaml.safe_load(SECOND_APP.read_text())
    first = inventory["_meta"]["hostvars"][group_hosts(inventory, "app_servers")[0]]
    assert second["django_app_name"] != first["django_app_name"]
    assert not set(second["django_app_allowed_hosts"]) & set(first["django_app_allowed_hosts"])


def test_the_second_app_secrets_are_in_the_vault(inventory):
    referenced = set(re.findall(r"\bvault_\w+", SECOND_APP.read_text()))
    defined = {
        name for host_vars in inventory["_meta"]["hostvars"].values() for name in host_vars if name.startswith("vault_")
    }
    assert referenced
    assert referenced <= defined
