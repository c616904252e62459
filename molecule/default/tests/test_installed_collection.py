"""The collection as users get it: the tarball ansible-galaxy builds, installed into a fresh Ansible.

The tarball goes into a collections path inside a new virtualenv holding the
ansible, ansible-core and uv versions pinned in requirements-dev.txt; the
playbooks run from a directory outside the repository with that path alone
(not the repository's symlink, nor its ansible.cfg) and deploy a new release
onto the scenario's Debian 12 host, which must then serve it through nginx.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import yaml

from conftest import http_get, published_http_port, wait_for

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
HOST = "django-asgi-default-app1"
COLLECTION = "django_asgi.rollout"


def pinned(package: str) -> str:
    text = (PROJECT / "requirements-dev.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE)
    assert match, f"requirements-dev.txt pins no {package}"
    return f"{package}=={match.group(1)}"


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        print(result.stdout[-4000:])
        print(result.stderr[-4000:])
    return result


class FreshAnsible:
    """A virtualenv with the pinned Ansible and the built collection on its own collections path."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.venv = workdir / "venv"
        self.collections = self.venv / "collections"
        config = workdir / "ansible.cfg"
        config.write_text("")  # Ansible's defaults, whatever the user or molecule configured
        self.env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "VIRTUAL_ENV"))}
        self.env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            ANSIBLE_CONFIG=str(config),
            ANSIBLE_COLLECTIONS_PATH=str(self.collections),
            ANSIBLE_FORCE_COLOR="0",
        )

    def __call__(self, tool: str, *arguments: str, timeout: int = 900) -> subprocess.CompletedProcess:
        return run([str(self.venv / "bin" / tool), *arguments], cwd=self.workdir, env=self.env, timeout=timeout)


@pytest.fixture(scope="module")
def fresh_ansible(tmp_path_factory) -> FreshAnsible:
    workdir = tmp_path_factory.mktemp("installed-collection")
    ansible = FreshAnsible(workdir)
    tool = Path(sys.executable).parent / "ansible-galaxy"
    built = run([str(tool), "collection", "build", str(PROJECT), "--output-path", str(workdir)], workdir, ansible.env)
    assert built.returncode == 0, built.stderr
    (tarball,) = workdir.glob("django_asgi-rollout-*.tar.gz")

    # uv, pinned beside the tools, makes the venv and installs in seconds what pip takes a minute for.
    uv = str(Path(sys.executable).parent / "uv")
    created = run([uv, "venv", "--quiet", "--python", sys.executable, str(ansible.venv)], workdir, ansible.env)
    assert created.returncode == 0, created.stderr
    install = (uv, "pip", "install", "--quiet", "--python", str(ansible.venv / "bin" / "python"))
    installed = run([*install, pinned("ansible"), pinned("ansible-core"), pinned("uv")], workdir, ansible.env)
    assert installed.returncode == 0, installed.stderr
    # --offline: the tarball has no dependencies, and no Galaxy server is asked.
    install = ("ansible-galaxy", "collection", "install", "--offline", "-p", str(ansible.collections))
    galaxy = ansible(*install, tarball.name)
    assert galaxy.returncode == 0, galaxy.stderr
    return ansible


def test_the_tarball_installs_the_collection_alone_on_the_collections_path(fresh_ansible):
    listing = fresh_ansible("ansible-galaxy", "collection", "list", COLLECTION, "--format", "json")
    assert listing.returncode == 0, listing.stderr
    found = {path: names[COLLECTION]["version"] for path, names in json.loads(listing.stdout).items()}
    version = yaml.safe_load((PROJECT / "galaxy.yml").read_text())["version"]
    assert found == {str(fresh_ansible.collections / "ansible_collections"): version}
    installed = fresh_ansible.collections / "ansible_collections" / "django_asgi" / "rollout"
    assert not installed.is_symlink()
    assert (installed / "MANIFEST.json").is_file()
    assert not (installed / "molecule").exists()
    assert not (installed / ".venv").exists()


def test_the_installed_collection_deploys_a_new_release_that_nginx_serves(fresh_ansible):
    release = f"installed-{secrets.token_hex(4)}"
    deployed = fresh_ansible(
        "ansible-playbook",
        f"{COLLECTION}.site",
        "-i",
        str(INVENTORY),
        "--limit",
        HOST,
        "-e",
        f"django_app_release_id={release}",
    )
    assert deployed.returncode == 0, deployed.stdout[-4000:]
    assert re.search(rf"^{re.escape(HOST)}\s*:.*\bfailed=0\b", deployed.stdout, re.MULTILINE), deployed.stdout[-2000:]

    host = testinfra.get_host(f"ansible://{HOST}?ansible_inventory={INVENTORY}")
    url = f"http://127.0.0.1:{published_http_port(host)}/whoami"
    answer = wait_for(lambda: (a := http_get(url)).status == 200 and a, timeout=30)
    assert answer.json()["release"] == release, answer.body
