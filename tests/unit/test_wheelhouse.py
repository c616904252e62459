"""The wheelhouse action's parts: each dependency-file form resolved by uv, and what it decides."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".cache" / "collections"))

from ansible_collections.django_asgi.rollout.plugins.action import wheelhouse
from ansible_collections.django_asgi.rollout.plugins.filter.build_failure import build_failure

BOOKWORM = {"distribution": "bookworm", "version": "3.11", "tag": "311", "machine": "x86_64", "glibc": "2.36"}
TRIXIE = {"distribution": "trixie", "version": "3.13", "tag": "313", "machine": "x86_64", "glibc": "2.41"}
# sqlparse 0.6.1 sha256 of its wheel, as pip-tools writes it.
SQLPARSE_HASH = "sha256:4c6b0f8e4b1b0c8c3e4a5e1f6f1a2b7f1c7c4d2f0c2a6d4b6e8f0a1b2c3d4e5f"


def resolve(tmp_path: Path, requirements: str, target: dict | None = None, extra: list[str] | None = None) -> dict:
    house = wheelhouse.Wheelhouse(tmp_path / "cache", sys.executable, target or BOOKWORM)
    return dict(wheelhouse.pins(house.resolve(tmp_path / "project", requirements, extra or [])))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "project").mkdir()
    return tmp_path / "project"


def test_a_requirements_file_with_includes_constraints_and_hashes(tmp_path, project):
    (project / "requirements").mkdir()
    (project / "requirements" / "base.txt").write_text("Django==5.2.19\nsqlparse\n")
    (project / "constraints.txt").write_text("sqlparse==0.6.1\nasgiref==3.13.0\n")
    # pip-tools output: a pin with its hash.
    (project / "requirements.txt").write_text(
        f"-c constraints.txt\n-r requirements/base.txt\ndocopt==0.6.2 \\\n    --hash={SQLPARSE_HASH}\n"
    )
    pins = resolve(tmp_path, "requirements.txt", extra=["uvicorn==0.38.0"])
    assert pins["django"] == "5.2.19" and pins["sqlparse"] == "0.6.1" and pins["asgiref"] == "3.13.0"
    assert pins["docopt"] == "0.6.2" and pins["uvicorn"] == "0.38.0"


def test_a_pyproject_toml(tmp_path, project):
    (project / "pyproject.toml").write_text(
        '[project]\nname = "site"\nversion = "1"\nrequires-python = ">=3.11"\n'
        'dependencies = ["Django==5.2.19", "typing_extensions; python_version < \'3.13\'"]\n'
    )
    assert "typing-extensions" in resolve(tmp_path, "pyproject.toml", BOOKWORM)
    # Resolved for the host's Python, not the controller's.
    assert "typing-extensions" not in resolve(tmp_path, "pyproject.toml", TRIXIE)


def test_a_uv_lock(tmp_path, project):
    (project / "pyproject.toml").write_text(
        '[project]\nname = "site"\nversion = "1"\nrequires-python = ">=3.11"\ndependencies = ["Django==5.2.19"]\n'
        '[dependency-groups]\ndev = ["pytest==9.0.3"]\n'
    )
    subprocess.run([sys.executable, "-m", "uv", "lock", "--quiet"], cwd=project, check=True)
    pins = resolve(tmp_path, "uv.lock")
    assert pins["django"] == "5.2.19"
    assert "pytest" not in pins, "the dev group is not deployed"
    assert "site" not in pins, "the project itself runs from its tree"


GUNICORN = ["gunicorn==27.0.1", "uvicorn-worker==0.4.0", "uvicorn==0.54.0", "uvloop==0.23.0", "twisted[tls]==26.10.0"]
GUNICORN_MINIMUMS = [
    {"name": "gunicorn", "version": "25.1", "why": "--no-control-socket is new in 25.1", "server": "gunicorn"}
]


def test_the_projects_pins_win_over_the_servers_and_keep_its_extras():
    project = {"gunicorn": "25.3.0", "uvicorn": "0.40.0", "twisted": "25.5.0", "django": "5.2.19"}
    kept = wheelhouse.keep_project_pins(GUNICORN, project, GUNICORN_MINIMUMS, "uv.lock")
    assert kept == [
        "gunicorn==25.3.0",
        "uvicorn-worker==0.4.0",
        "uvicorn==0.40.0",
        "uvloop==0.23.0",
        "twisted[tls]==25.5.0",
    ]


def test_a_project_pin_older_than_the_servers_minimum_is_refused_naming_package_version_and_why():
    with pytest.raises(wheelhouse.AnsibleActionFail) as raised:
        wheelhouse.keep_project_pins(GUNICORN, {"gunicorn": "23.0.0"}, GUNICORN_MINIMUMS, "uv.lock")
    assert str(raised.value.message) == (
        "gunicorn 23.0.0, the version uv.lock pins, is older than 25.1, the oldest the ASGI server (gunicorn) "
        "works with: --no-control-socket is new in 25.1. Upgrade gunicorn to 25.1 or later in the project, "
        "or choose another asgi_server_kind"
    )


def test_a_uv_lock_that_pins_the_servers_packages_resolves_with_its_own_versions(tmp_path, project):
    """The project's resolution and the servers' pins disagree: the project wins, uv still resolves it all."""
    (project / "pyproject.toml").write_text(
        '[project]\nname = "site"\nversion = "1"\nrequires-python = ">=3.11"\n'
        'dependencies = ["Django==5.2.19", "gunicorn==25.1.0", "uvicorn-worker==0.3.0", "uvicorn==0.35.0"]\n'
    )
    subprocess.run([sys.executable, "-m", "uv", "lock", "--quiet"], cwd=project, check=True)
    house = wheelhouse.Wheelhouse(tmp_path / "cache", sys.executable, BOOKWORM)
    lock = wheelhouse.resolution(house, project, "uv.lock", GUNICORN[:4], GUNICORN_MINIMUMS)
    pins = dict(wheelhouse.pins(lock))
    assert (pins["gunicorn"], pins["uvicorn-worker"], pins["uvicorn"]) == ("25.1.0", "0.3.0", "0.35.0")
    assert pins["uvloop"] == "0.23.0", "what the project does not hold comes at the collection's pin"


def test_a_pin_that_does_not_exist_names_the_package(tmp_path, project):
    (project / "requirements.txt").write_text("docopt==99.0\n")
    with pytest.raises(wheelhouse.AnsibleActionFail, match=r"cannot be resolved for Python 3\.11.*docopt==99\.0"):
        resolve(tmp_path, "requirements.txt")


def sdist(tmp_path: Path, files: dict[str, str]) -> Path:
    path = tmp_path / "example-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(f"example-1.0/{name}")
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return path


def test_what_compiles_goes_to_the_builder_with_its_build_requirements(tmp_path):
    pure = sdist(tmp_path, {"setup.py": "", "example.py": ""})
    assert not wheelhouse.is_compiled(pure)
    assert wheelhouse.build_requirements(pure) == ["setuptools>=40.8.0", "wheel"]
    compiled = sdist(tmp_path, {"pyproject.toml": '[build-system]\nrequires = ["Cython>=3"]\n', "ext.pyx": ""})
    assert wheelhouse.is_compiled(compiled)
    assert wheelhouse.build_requirements(compiled) == ["Cython>=3", "wheel"]


def test_the_hosts_install_with_the_controllers_uv_or_else_pip(tmp_path):
    import importlib.metadata

    binary = wheelhouse.Wheelhouse(tmp_path / "cache", sys.executable, BOOKWORM).installer()
    assert Path(binary).name == f"uv-{importlib.metadata.version('uv')}-x86_64"
    answer = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout  # noqa: S603
    assert answer.startswith(f"uv {importlib.metadata.version('uv')} ")
    # A machine uv publishes no wheel for installs with pip.
    sparc = wheelhouse.Wheelhouse(tmp_path / "cache", sys.executable, {**BOOKWORM, "machine": "sparc64"})
    assert sparc.installer() == ""


def test_platforms_follow_the_hosts_glibc():
    assert wheelhouse.platforms(BOOKWORM)[0] == "manylinux_2_36_x86_64"
    assert wheelhouse.platforms(BOOKWORM)[-1] == "linux_x86_64"
    # uv knows manylinux levels up to 2.40; trixie's 2.41 accepts those.
    assert wheelhouse.uv_platform(TRIXIE) == "x86_64-manylinux_2_40"


def test_a_build_failure_says_what_and_why_in_one_line():
    result = {
        "item": {"name": "psycopg2", "version": "2.9.10"},
        "stdout": "Building wheel for psycopg2 (pyproject.toml): started\n",
        "stderr": "  ╰─> [20 lines of output]\n      Error: pg_config executable not found.\n"
        "  error: subprocess-exited-with-error\nERROR: Failed building wheel for psycopg2\n",
    }
    message = build_failure(result, python="3.11", target="bookworm-cp311-x86_64", builder="app1")
    assert message.startswith("psycopg2 2.9.10 could not be built for Python 3.11 on bookworm-cp311-x86_64")
    assert "pg_config executable not found" in message and "django_app_build_packages" in message
    assert "\n" not in message
