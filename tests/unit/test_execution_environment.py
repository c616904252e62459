"""execution-environment.yml: the build context ansible-builder writes from it, with this collection inside."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFINITION = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
VERSION = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
PINS = dict(
    re.match(r"^([A-Za-z0-9_.\[\]-]+)==(\S+)", line).groups()
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
    if re.match(r"^[A-Za-z0-9]", line)
)


def run(*command: str, cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    """What a user does: build the collection beside the definition, then ansible-builder create."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copy(ROOT / "execution-environment.yml", work)
    build = work / "build"
    run(str(BIN / "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(build), str(ROOT), cwd=work)
    run(str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "context", cwd=work)
    return work / "context"


def test_the_definition_pins_what_the_project_pins():
    dependencies = DEFINITION["dependencies"]
    assert dependencies["ansible_core"]["package_pip"] == f"ansible-core=={PINS['ansible-core']}"
    assert f"uv=={PINS['uv']}" in dependencies["python"]
    assert [c["name"] for c in dependencies["galaxy"]["collections"]] == [
        f"collections/django_asgi-rollout-{VERSION}.tar.gz"
    ]


def test_the_build_context_installs_the_pinned_core_and_this_collection(context):
    containerfile = next(context.glob("[CD]*file")).read_text()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile, re.MULTILINE).group(1).split()
    assert f"ansible-core=={PINS['ansible-core']}" in refs
    assert any(ref.startswith("ansible-runner==") for ref in refs)
    assert "ansible-galaxy collection install" in containerfile
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    (collection,) = requirements["collections"]
    archive = context / "_build" / collection["name"]
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        names = set(tar.getnames())
    assert (manifest["collection_info"]["namespace"], manifest["collection_info"]["name"]) == ("django_asgi", "rollout")
    assert manifest["collection_info"]["version"] == VERSION
    # What users run from it: the playbooks and every role.
    assert {"playbooks/site.yml", "playbooks/rollback.yml", "playbooks/report.schema.json"} <= names
    for role in ("django_app", "asgi_server", "nginx_proxy", "load_balancer"):
        assert f"roles/{role}/tasks/main.yml" in names
    assert not any(name.startswith(("molecule/", "bench/", "tests/", "build/")) for name in names)


def test_the_build_context_brings_the_controllers_tools(context):
    assert f"uv=={PINS['uv']}" in (context / "_build" / "requirements.txt").read_text().split()
    bindep = (context / "_build" / "bindep.txt").read_text()
    assert re.search(r"^git \[", bindep, re.MULTILINE) and re.search(r"^tar \[", bindep, re.MULTILINE)
