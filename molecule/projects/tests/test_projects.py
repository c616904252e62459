"""A project the collection did not write, deployed as it is (examples/bookshelf).

It comes from a local git repository; its requirements pin psycopg2 and docopt,
which exist only as source archives; manage.py sits in site/; it has no asgi.py;
the operator writes its settings/local.py; MEDIA_ROOT is hard-coded.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import testinfra

from conftest import run_playbook, words

INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
REPOSITORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "bookshelf"
CACHE = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "cache"
LOAD_BALANCER = "http://127.0.0.1:18480"
APP_PORTS = {"django-asgi-projects-app1": 18481, "django-asgi-projects-app2": 18482}
SERVERS = {"django-asgi-projects-app1": "gunicorn", "django-asgi-projects-app2": "granian"}
ALL_HOSTS = [*APP_PORTS, "django-asgi-projects-lb"]
LOCK = "/run/lock/django-asgi-rollout-bookshelf.json"
MAIL_PASSWORD = "molecule-only-mail-password-51f0"  # noqa: S105  (the scenario's own test value)
# Bounds of the load during one rollout.
LOAD_SECONDS = 600
LOAD_REQUESTS = 50000


def host(name: str):
    return testinfra.get_host(f"docker://{name}")


def request(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")  # noqa: S310
    req.add_header("Connection", "close")
    try:
        with urllib.request.urlopen(req, timeout=15) as answer:  # noqa: S310  (127.0.0.1 URLs of this file)
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def whoami(base: str) -> dict:
    status, body = request(f"{base}/whoami")
    assert status == 200, body
    return json.loads(body)


def git(*arguments: str) -> str:
    command = ["git", "-c", "user.name=molecule", "-c", "user.email=molecule@localhost", *arguments]
    return subprocess.run(command, cwd=REPOSITORY, check=True, capture_output=True, text=True).stdout.strip()


def commit(path: str, text: str, message: str) -> str:
    target = REPOSITORY / path
    target.write_text(text)
    git("add", path)
    git("commit", "--quiet", "-m", message)
    return git("rev-parse", "HEAD")


def releases() -> dict[str, str]:
    return {name: whoami(f"http://127.0.0.1:{port}")["release"] for name, port in APP_PORTS.items()}


def no_host_holds_the_lock() -> None:
    for name in ALL_HOSTS:
        assert not host(name).file(LOCK).exists, f"{name} still holds the rollout lock"


class Load:
    """GETs and database writes through the load balancer, bounded in time and count."""

    def __init__(self) -> None:
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(i,)) for i in range(3)]

    def _work(self, index: int) -> None:
        deadline = time.monotonic() + LOAD_SECONDS
        while not self._stop.is_set() and time.monotonic() < deadline and self.sent < LOAD_REQUESTS:
            post = index == 0
            try:
                status, body = request(f"{LOAD_BALANCER}/{'notes' if post else 'whoami'}", b"load" if post else None)
                failed = None if status in (200, 201) else f"{status} {body[:200]!r}"
            except OSError as error:
                failed = repr(error)
            with self._lock:
                self.sent += 1
                if failed:
                    self.failures.append(failed)
            time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def test_every_host_serves_the_project_and_its_postgresql_database():
    for name, port in APP_PORTS.items():
        base = f"http://127.0.0.1:{port}"
        seen = whoami(base)
        assert seen["server"] == SERVERS[name]
        assert (seen["db_driver"], seen["db_vendor"]) == ("psycopg2", "postgresql")
        assert seen["docopt"] == "0.6.2"
        # From the settings/local.py the inventory writes into the release.
        assert seen["site_title"] == "Bookshelf of the projects scenario"
        status, body = request(f"{base}/notes", f"written through {name}".encode())
        assert status == 201, body
        status, body = request(f"{base}/notes")
        assert json.loads(body)["last"] == f"written through {name}"


def test_static_files_keep_their_hashed_names_through_nginx():
    style = whoami(LOAD_BALANCER)["style_url"]
    assert style.startswith("/static/shelf/style.") and style != "/static/shelf/style.css"
    status, body = request(f"{LOAD_BALANCER}{style}")
    assert status == 200 and b"{" in body


def test_only_the_builder_compiled_psycopg2():
    built = list((CACHE / "built" / "bookworm-cp311-x86_64").glob("psycopg2-2.9.10-cp311-cp311-linux_x86_64.whl"))
    assert built, "the builder's psycopg2 wheel is not in the controller's cache"
    assert list((CACHE / "built" / "any").glob("docopt-0.6.2-*-none-any.whl")), "docopt was not built on the controller"
    assert host("django-asgi-projects-app1").exists("gcc"), "app1, the builder, has no compiler"
    app2 = host("django-asgi-projects-app2")
    assert not app2.exists("gcc") and not app2.exists("cc"), "a host that is not the builder has a compiler"
    linked = app2.check_output(
        "ldd /srv/bookshelf/releases/*/venv-*/lib/python3.11/site-packages/psycopg2/_psycopg*.so"
    )
    assert "libpq.so.5 => /" in linked


def test_the_operator_file_is_readable_by_the_app_only():
    for name in APP_PORTS:
        app = host(name)
        colour = app.file("/var/lib/bookshelf/active-colour").content_string.strip()
        workdir = app.check_output(f"systemctl show --property WorkingDirectory --value bookshelf@{colour}")
        assert workdir.endswith("/src/site"), "the release does not run from the project directory"
        local = app.file(f"{workdir}/bookshelf/settings/local.py")
        assert (local.user, local.group, local.mode) == ("root", "bookshelf", 0o640)
        assert MAIL_PASSWORD in local.content_string
        # Bytecode of it would be readable by anyone.
        assert not app.run(f"ls {workdir}/bookshelf/settings/__pycache__/ | grep '^local'").stdout.strip()


def test_a_new_commit_rolls_out_under_load_and_builds_nothing():
    for name, port in APP_PORTS.items():
        status, body = request(f"http://127.0.0.1:{port}/media/upload?name=before-{name}.bin", name.encode() * 10)
        assert status == 201, body
    wheel = next((CACHE / "built" / "bookworm-cp311-x86_64").glob("psycopg2-*.whl"))
    built_at = wheel.stat().st_mtime
    sha = commit("README.md", (REPOSITORY / "README.md").read_text() + "\nA second commit.\n", "a second commit")
    with Load() as load:
        returncode, output = run_playbook("site.yml", "-vvv", "--diff", inventory=INVENTORY, echo=False)
    print(output[-3000:])
    print(f"load during the rollout: sent {load.sent}, failed {len(load.failures)}: {load.failures[:5]}")
    assert returncode == 0
    assert load.sent > 50 and load.failures == []
    assert len(set(releases().values())) == 1
    assert all(release.startswith(sha[:12]) for release in releases().values())
    assert wheel.stat().st_mtime == built_at, "psycopg2 was built again"
    assert "Build each source archive into a wheel" not in output, "the builder built again"
    assert MAIL_PASSWORD not in output, "a secret of the operator's file is in Ansible's output"
    for name, port in APP_PORTS.items():
        status, body = request(f"http://127.0.0.1:{port}/media/before-{name}.bin")
        assert (status, body) == (200, name.encode() * 10), "an upload did not survive the rollout"


def test_a_rollback_keeps_the_uploads():
    rolled_out = releases()
    returncode, _output = run_playbook("playbooks/rollback.yml", inventory=INVENTORY)
    assert returncode == 0
    assert all(releases()[name] != rolled_out[name] for name in APP_PORTS), "a host did not roll back"
    for name, port in APP_PORTS.items():
        status, body = request(f"http://127.0.0.1:{port}/media/before-{name}.bin")
        assert (status, body) == (200, name.encode() * 10), "an upload did not survive the rollback"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # Compiles against libldap's headers, which the builder does not have.
        ("python-ldap==3.4.4", "python-ldap 3.4.4 could not be built for Python 3.11 on bookworm-cp311-x86_64"),
        # No such version: nothing to download or build.
        ("docopt==99.0", "The dependencies in requirements.txt cannot be resolved for Python 3.11"),
    ],
)
def test_a_requirement_that_cannot_be_had_fails_before_any_host_switches(line, expected):
    before = releases()
    requirements = (REPOSITORY / "requirements.txt").read_text()
    commit("requirements.txt", f"{requirements}{line}\n", f"require {line}")
    try:
        returncode, output = run_playbook("site.yml", inventory=INVENTORY)
    finally:
        git("revert", "--no-edit", "HEAD")
    assert returncode != 0
    last = words(output[output.rindex("The rollout stopped") :])
    assert expected in last, last
    assert releases() == before, "a host switched despite the failed build"
    no_host_holds_the_lock()


# --- A project that pins the servers' packages itself -------------------------------

# gunicorn, its uvicorn worker and uvicorn at versions other than the server definitions' pins.
PINNED = {"gunicorn": "25.1.0", "uvicorn-worker": "0.3.0", "uvicorn": "0.35.0"}
# app1 stays on gunicorn; app2 moves from granian to uvicorn, both from the project's own lock.
PINNED_SERVERS = {"django-asgi-projects-app1": "gunicorn", "django-asgi-projects-app2": "uvicorn"}
KIND_BY_HOST = json.dumps(
    {"asgi_server_kind": "{{ 'uvicorn' if inventory_hostname == 'django-asgi-projects-app2' else 'gunicorn' }}"}
)


def locked_branch(branch: str, pins: dict[str, str]) -> None:
    """A branch of the project whose dependencies are a pyproject.toml and its uv.lock, as uv writes them."""
    git("checkout", "--quiet", "-B", branch, "main")
    lines = [line.split("#")[0].strip() for line in (REPOSITORY / "requirements" / "base.txt").read_text().splitlines()]
    dependencies = [line for line in lines if line] + ["psycopg2==2.9.10"]
    # uvicorn as projects ask for it, with its extras (uvloop, httptools, websockets at uv's choice).
    extras = {"uvicorn": "[standard]"}
    dependencies += [f"{name}{extras.get(name, '')}=={version}" for name, version in pins.items()]
    (REPOSITORY / "pyproject.toml").write_text(
        '[project]\nname = "bookshelf"\nversion = "1.0"\nrequires-python = ">=3.11"\n'
        f"dependencies = {json.dumps(dependencies)}\n"
    )
    subprocess.run([sys.executable, "-m", "uv", "lock", "--quiet"], cwd=REPOSITORY, check=True, timeout=300)
    git("add", "pyproject.toml", "uv.lock")
    git("commit", "--quiet", "-m", f"bookshelf locked with uv ({branch})")
    git("checkout", "--quiet", "main")


def managed_state(name: str) -> str:
    """Path, size, mode and time of what the rollout manages on a host, and its running units."""
    return host(name).check_output(
        "find /srv/bookshelf /etc/nginx /etc/systemd/system -xdev -path /srv/bookshelf/shared -prune"
        " -o -printf '%p %s %m %T@\\n' 2>/dev/null | sort | sha1sum;"
        " systemctl list-units --plain --no-legend --state=running 'bookshelf@*' nginx.service"
    )


def installed(name: str, release: str, packages: list[str]) -> dict[str, str]:
    """The versions of packages in the venv a release runs on, as the host's Python reads its metadata."""
    venv = host(name).check_output(f"ls -d /srv/bookshelf/releases/{release}/venv-*")
    program = f"import importlib.metadata as m, json; print(json.dumps({{p: m.version(p) for p in {packages!r}}}))"
    return json.loads(host(name).check_output(f"{venv}/bin/python -c {shlex.quote(program)}"))


def test_a_lock_pin_older_than_the_servers_minimum_is_refused_before_any_host_changes():
    locked_branch("too-old", {**PINNED, "gunicorn": "23.0.0"})
    before = {name: managed_state(name) for name in ALL_HOSTS}
    returncode, output = run_playbook(
        "site.yml",
        "-e",
        "django_app_source_version=too-old",
        "-e",
        "django_app_requirements_file=uv.lock",
        "-e",
        KIND_BY_HOST,
        inventory=INVENTORY,
    )
    assert returncode != 0
    last = words(output[output.rindex("The rollout stopped") :])
    assert (
        "gunicorn 23.0.0, the version uv.lock pins, is older than 25.1, the oldest the ASGI server (gunicorn) "
        "works with: its --no-control-socket option is new in gunicorn 25.1" in last
    ), last
    assert {name: managed_state(name) for name in ALL_HOSTS} == before
    no_host_holds_the_lock()


def test_a_lock_that_pins_the_servers_deploys_with_its_own_versions_under_load():
    locked_branch("pinned", PINNED)
    with Load() as load:
        returncode, output = run_playbook(
            "site.yml",
            "-e",
            "django_app_source_version=pinned",
            "-e",
            "django_app_requirements_file=uv.lock",
            "-e",
            KIND_BY_HOST,
            inventory=INVENTORY,
            echo=False,
        )
    print(output[-3000:])
    print(f"load during the rollout: sent {load.sent}, failed {len(load.failures)}: {load.failures[:5]}")
    assert returncode == 0
    assert load.sent > 50 and load.failures == []
    for name, port in APP_PORTS.items():
        seen = whoami(f"http://127.0.0.1:{port}")
        assert seen["server"] == PINNED_SERVERS[name], seen
        versions = installed(name, seen["release"], sorted(PINNED))
        # The whole lock is installed on both; gunicorn's are what its command runs.
        assert versions == PINNED, (name, versions)
    assert whoami(LOAD_BALANCER)["release"] in set(releases().values())
    no_host_holds_the_lock()
