# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make on the controller the wheelhouse each kind of app host installs from.

uv resolves the project's dependency file for the host's Python and platform,
then once more with what the collection adds to the venv (the server's
packages): where the project's own resolution already holds one of them, the
project's version is kept, and refused when older than the server's minimum;
pip downloads a wheel for each pin, or its source archive where none exists.
Pure-Python source archives are built here; the rest are listed for a builder
host, which builds them and hands the wheels back into ``built/<target>``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

try:  # ansible-core itself depends on packaging
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
    from packaging.version import Version
except ImportError:  # pragma: no cover  (only in ansible-test's bare import check)
    Requirement = canonicalize_name = parse_sdist_filename = parse_wheel_filename = Version = None

# Files that mean an extension module to compile.
_COMPILED_SUFFIXES = {".c", ".cc", ".cpp", ".cxx", ".pyx", ".rs", ".f", ".f90", ".go", ".m"}
# The dependency files a project may hold; other changes keep the resolution.
_DEPENDENCY_SUFFIXES = {".txt", ".in", ".toml", ".lock", ".cfg"}
_PRUNED_DIRS = {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox"}
# The newest manylinux level uv knows; a newer glibc accepts it too.
_UV_NEWEST_GLIBC_MINOR = 40
_PARALLEL_DOWNLOADS = 6


def dependency_kind(path: str) -> str:
    """What kind of dependency file this is, by its name."""
    name = Path(path).name
    if name == "uv.lock":
        return "uv.lock"
    if name == "pyproject.toml":
        return "pyproject.toml"
    return "requirements"


def inputs_digest(source: Path, requirements: str, extra: list[str], minimums: list[dict] | None = None) -> str:
    """A digest of every file the resolution may read: dependency files only."""
    digest = hashlib.sha256(json.dumps([requirements, sorted(extra), minimums or []], sort_keys=True).encode())
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in _PRUNED_DIRS)
        for name in sorted(files):
            path = Path(root, name)
            if path.suffix in _DEPENDENCY_SUFFIXES or name in {"setup.py", "uv.lock"}:
                digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def platforms(target: dict) -> list[str]:
    """The manylinux tags a host with this glibc accepts, newest first, for pip."""
    minor = int((target.get("glibc") or "2.17").split(".")[1])
    machine = target["machine"]
    tags = [f"manylinux_2_{level}_{machine}" for level in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{machine}", f"linux_{machine}"]


def uv_platform(target: dict) -> str:
    minor = min(int((target.get("glibc") or "2.17").split(".")[1]), _UV_NEWEST_GLIBC_MINOR)
    return f"{target['machine']}-manylinux_2_{minor}"


def pins(lock: str) -> list[tuple[str, str]]:
    """(name, version) of each line of a resolution uv wrote for one platform."""
    result = []
    for line in lock.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        versions = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if len(versions) != 1:
            raise ValueError(f"{line!r} is not pinned to one version")
        result.append((canonicalize_name(requirement.name), versions[0]))
    return result


def keep_project_pins(extra: list[str], project: dict[str, str], minimums: list[dict], requirements: str) -> list[str]:
    """What the collection adds to the venv, at the project's version wherever the project's resolution has one.

    A package the project does not hold is added at the collection's pin. One it
    holds keeps the project's version (and the collection's extras, such as
    ``twisted[tls]``), unless that version is older than the minimum the server's
    command line needs: then nothing is built and the message says which, and why.
    """
    oldest = {canonicalize_name(minimum["name"]): minimum for minimum in minimums}
    kept = []
    for line in extra:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        version = project.get(name)
        if version is None:
            kept.append(line)
            continue
        minimum = oldest.get(name)
        if minimum and Version(version) < Version(str(minimum["version"])):
            server = f" ({minimum['server']})" if minimum.get("server") else ""
            raise AnsibleActionFail(
                f"{requirement.name} {version}, the version {requirements} pins, is older than {minimum['version']}, "
                f"the oldest the ASGI server{server} works with: {minimum['why']}. Upgrade {requirement.name} to "
                f"{minimum['version']} or later in the project, or choose another asgi_server_kind"
            )
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        marker = f" ; {requirement.marker}" if requirement.marker else ""
        kept.append(f"{requirement.name}{extras}=={version}{marker}")
    return kept


@contextlib.contextmanager
def _archive(sdist: Path) -> Iterator[tuple[list[str], Callable[[str], bytes]]]:
    """The member names of a source archive (.tar.gz or .zip), and a way to read one."""
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            yield archive.namelist(), archive.read
        return
    with tarfile.open(sdist) as tar:

        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            return member.read() if member else b""

        yield tar.getnames(), read


def is_compiled(sdist: Path) -> bool:
    """Whether a source archive holds code to compile (C, Cython, Rust, ...)."""
    with _archive(sdist) as (names, _read):
        return any(Path(n).suffix.lower() in _COMPILED_SUFFIXES or Path(n).name == "Cargo.toml" for n in names)


def build_requirements(sdist: Path) -> list[str]:
    """What building this source archive needs (PEP 518), setuptools when it says nothing."""
    requires: list[str] = ["setuptools>=40.8.0"]
    with _archive(sdist) as (names, read):
        top = [name for name in names if name.count("/") == 1 and name.endswith("/pyproject.toml")]
        if top:
            requires = tomllib.loads(read(top[0]).decode()).get("build-system", {}).get("requires", requires)
    # Older setuptools ask for wheel at build time (get_requires_for_build_wheel).
    return [*requires, "wheel"]


def _squash(text: str, limit: int = 600) -> str:
    """uv's whole explanation on one line (it says which pin conflicts with which)."""
    lines = [line.strip(" \u00d7\u2570\u2500\u25b6\u2502") for line in text.splitlines()]
    return " ".join(line for line in lines if line)[:limit]


def _tail(text: str, lines: int = 12) -> str:
    kept = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in kept if "error" in line.lower() and "warning" not in line.lower()]
    return " | ".join((errors or kept)[-lines:])


class Wheelhouse:
    """The wheelhouse of one target: (distribution, Python, machine)."""

    def __init__(self, cache: Path, python: str, target: dict) -> None:
        self.cache = cache
        self.python = python
        self.target = target
        self.name = f"{target['distribution']}-cp{target['tag']}-{target['machine']}"
        self.built_dir = cache / "built" / self.name
        self.pure_dir = cache / "built" / "any"
        self.downloads = cache / "downloads" / self.name
        self.sdists = cache / "sdists"
        for directory in (self.built_dir, self.pure_dir, self.downloads, self.sdists):
            directory.mkdir(parents=True, exist_ok=True)

    def run(self, argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        # pip and uv of the controller's Python, arguments built here from the inventory's values.
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)  # noqa: S603

    def resolve(self, source: Path, requirements: str, extra: list[str]) -> str:
        """The full, pinned set for this target, from uv."""
        uv = [self.python, "-m", "uv"]
        with tempfile.TemporaryDirectory(dir=self.cache) as work:
            inputs = []
            kind = dependency_kind(requirements)
            if kind == "uv.lock":
                exported = self.run(
                    [*uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-header", "--no-emit-project",
                     "--format", "requirements.txt", "--directory", str((source / requirements).parent)]
                )  # fmt: skip
                if exported.returncode:
                    raise AnsibleActionFail(f"uv export of {requirements} failed: {_squash(exported.stderr)}")
                Path(work, "exported.txt").write_text(exported.stdout)
                inputs.append(str(Path(work, "exported.txt")))
            else:
                inputs.append(str(source / requirements))
            if extra:
                Path(work, "extra.in").write_text("\n".join(extra) + "\n")
                inputs.append(str(Path(work, "extra.in")))
            compiled = self.run(
                [*uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--no-emit-index-url",
                 "--python-version", self.target["version"], "--python-platform", uv_platform(self.target), *inputs],
                cwd=(source / requirements).parent,
            )  # fmt: skip
        if compiled.returncode:
            raise AnsibleActionFail(
                f"The dependencies in {requirements} cannot be resolved for Python {self.target['version']} "
                f"on {self.name}: {_squash(compiled.stderr)}"
            )
        return compiled.stdout

    def _have(self, name: str, version: str) -> Path | None:
        for directory in (self.built_dir, self.pure_dir, self.downloads):
            for wheel in directory.glob("*.whl"):
                wheel_name, wheel_version, _build, _tags = parse_wheel_filename(wheel.name)
                if wheel_name == name and str(wheel_version) == version:
                    return wheel
        return None

    def _pip_download(self, lines: list[str], dest: Path, binary: bool) -> subprocess.CompletedProcess[str]:
        flags = (
            ["--only-binary=:all:", "--implementation=cp", f"--python-version={self.target['tag']}",
             f"--abi=cp{self.target['tag']}"]
            + [f"--platform={tag}" for tag in platforms(self.target)]
            if binary else ["--no-binary=:all:"]
        )  # fmt: skip
        return self.run(
            [self.python, "-m", "pip", "download", "--quiet", "--no-deps", *flags, "--dest", str(dest), *lines]
        )

    def download(self, wanted: list[tuple[str, str]]) -> list[tuple[str, str, Path]]:
        """Fetch a wheel for each pin missing here; return the pins that exist only as source archives."""
        missing = [(name, version) for name, version in wanted if not self._have(name, version)]
        if not missing:
            return []
        # One pip run when every pin has a wheel (the usual case), one per pin otherwise.
        if self._pip_download([f"{n}=={v}" for n, v in missing], self.downloads, binary=True).returncode == 0:
            return []
        with concurrent.futures.ThreadPoolExecutor(_PARALLEL_DOWNLOADS) as pool:
            binary = list(
                pool.map(lambda pin: self._pip_download([f"{pin[0]}=={pin[1]}"], self.downloads, True), missing)
            )
        sources = []
        for (name, version), answer in zip(missing, binary, strict=True):
            if answer.returncode == 0:
                continue
            sdist = self._sdist(name, version)
            if sdist is None:
                raise AnsibleActionFail(
                    f"{name} {version} has neither a wheel for Python {self.target['version']} on "
                    f"{', '.join(platforms(self.target)[:1])} nor a source archive: {_tail(answer.stderr)}"
                )
            sources.append((name, version, sdist))
        return sources

    def _sdist(self, name: str, version: str) -> Path | None:
        for sdist in self.sdists.iterdir():
            try:
                sdist_name, sdist_version = parse_sdist_filename(sdist.name)
            except ValueError:
                continue
            if sdist_name == name and str(sdist_version) == version:
                return sdist
        with tempfile.TemporaryDirectory(dir=self.cache) as work:
            if self._pip_download([f"{name}=={version}"], Path(work), binary=False).returncode:
                return None
            for fetched in Path(work).iterdir():
                shutil.move(str(fetched), self.sdists / fetched.name)
        return self._sdist(name, version)

    def build_pure(self, name: str, version: str, sdist: Path) -> bool:
        """Build a source archive here when it compiles nothing; whether it gave a pure wheel."""
        if is_compiled(sdist):
            return False
        with tempfile.TemporaryDirectory(dir=self.cache) as work:
            built = self.run(
                [self.python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", work, str(sdist)]
            )
            wheels = list(Path(work).glob("*.whl"))
            if built.returncode or len(wheels) != 1 or not wheels[0].name.endswith("-none-any.whl"):
                return False
            shutil.move(str(wheels[0]), self.pure_dir / wheels[0].name)
        return True

    def builder_archive(self, sources: list[tuple[str, str, Path]]) -> Path:
        """A tar of the source archives to build and everything their builds need, for the builder."""
        digest = hashlib.sha256("".join(sorted(sdist.name for _n, _v, sdist in sources)).encode()).hexdigest()[:12]
        archive = self.cache / f"build-{self.name}-{digest}.tar"
        if archive.exists():
            return archive
        with tempfile.TemporaryDirectory(dir=self.cache) as work:
            requirements = sorted({r for _n, _v, sdist in sources for r in build_requirements(sdist)})
            (Path(work) / "build-requirements").mkdir()
            fetched = self.run(
                [self.python, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--implementation=cp",
                 f"--python-version={self.target['tag']}",
                 *[f"--platform={tag}" for tag in platforms(self.target)],
                 "--dest", str(Path(work) / "build-requirements"), *requirements]
            )  # fmt: skip
            if fetched.returncode:
                raise AnsibleActionFail(
                    f"The build requirements {', '.join(requirements)} of "
                    f"{', '.join(f'{n} {v}' for n, v, _s in sources)} cannot be downloaded for Python "
                    f"{self.target['version']} on {self.name}: {_tail(fetched.stderr)}"
                )
            (Path(work) / "sources").mkdir()
            for _name, _version, sdist in sources:
                shutil.copy2(sdist, Path(work) / "sources" / sdist.name)
            with tarfile.open(f"{archive}.partial", "w") as tar:
                tar.add(work, arcname=".")
            os.replace(f"{archive}.partial", archive)
        return archive

    def installer(self) -> str:
        """The uv binary for this machine, of the controller's uv version, or "" when it has none (then pip)."""
        found = self.run([self.python, "-c", "import importlib.metadata as m; print(m.version('uv'))"])
        if found.returncode:
            return ""
        version = found.stdout.strip()
        binary = self.cache / "tools" / f"uv-{version}-{self.target['machine']}"
        if binary.exists():
            return str(binary)
        binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache) as work:
            if self._pip_download([f"uv=={version}"], Path(work), binary=True).returncode:
                return ""
            wheel = next(Path(work).glob("uv-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                member = f"uv-{version}.data/scripts/uv"
                if member not in archive.namelist():
                    return ""
                Path(work, "uv").write_bytes(archive.read(member))
            Path(work, "uv").chmod(0o755)
            os.replace(Path(work, "uv"), binary)
        return str(binary)

    def assemble(self, key: str, lock: str, wanted: list[tuple[str, str]]) -> Path:
        archive = self.cache / f"wheelhouse-{key}.tar"
        if archive.exists():
            return archive
        with tempfile.TemporaryDirectory(dir=self.cache) as work:
            for name, version in wanted:
                wheel = self._have(name, version)
                if wheel is None:
                    raise AnsibleActionFail(f"{name} {version} is missing from the wheelhouse of {self.name}")
                shutil.copy2(wheel, Path(work) / wheel.name)
            Path(work, "requirements.lock").write_text(lock)
            Path(work, ".complete").write_text(key + "\n")
            with tarfile.open(f"{archive}.partial", "w") as tar:
                tar.add(work, arcname=".")
            os.replace(f"{archive}.partial", archive)
        return archive


def resolution(house: Wheelhouse, source: Path, requirements: str, extra: list[str], minimums: list[dict]) -> str:
    """The pinned set for one target: the project's own first, then with what the collection adds; cached."""
    resolved = house.cache / f"resolved-{house.name}-{inputs_digest(source, requirements, extra, minimums)}.txt"
    if resolved.exists():
        return resolved.read_text()
    kept = []
    if extra:
        project = dict(pins(resolution(house, source, requirements, [], [])))
        kept = keep_project_pins(extra, project, minimums, requirements)
    lock = house.resolve(source, requirements, kept)
    resolved.write_text(lock)
    return lock


def make(
    cache: Path, python: str, source: Path, requirements: str, extra: list[str], target: dict, minimums=None
) -> dict:
    """What one kind of host needs: done, or the source archives its builder must build first."""
    house = Wheelhouse(cache, python, target)
    lock = resolution(house, source, requirements, extra, list(minimums or []))
    key = hashlib.sha256(f"{house.name}\n{lock}".encode()).hexdigest()[:16]
    result = {
        "target": house.name,
        "key": key,
        "archive": str(cache / f"wheelhouse-{key}.tar"),
        "built_dir": str(house.built_dir),
        "complete": True,
        "to_build": [],
        # What hosts of this kind install the venv with: the path of uv's binary here, or "" for pip.
        "installer": house.installer(),
    }
    if Path(result["archive"]).exists():
        return result
    wanted = pins(lock)
    sources = house.download(wanted)
    to_build = [(n, v, s) for n, v, s in sources if not house.build_pure(n, v, s)]
    if to_build:
        return {**result, "complete": False, "_sources": to_build}
    house.assemble(key, lock, wanted)
    return result


def make_all(cache: Path, python: str, source: Path, requirements: str, targets: list[dict]) -> list[dict]:
    """One wheelhouse per target (a kind of host and its server's packages); one builder archive per kind."""
    results = []
    for target in targets:
        extra = list(target.get("extra") or [])
        minimums = list(target.get("minimums") or [])
        results.append({**make(cache, python, source, requirements, extra, target, minimums), "request": target})
    by_kind: dict[str, dict[str, tuple[str, str, Path]]] = {}
    for result in results:
        for name, version, sdist in result.get("_sources", []):
            by_kind.setdefault(result["target"], {})[sdist.name] = (name, version, sdist)
    for result in results:
        if result.pop("_sources", None):
            sources = sorted(by_kind[result["target"]].values())
            house = Wheelhouse(cache, python, result["request"])
            result["to_build"] = [{"name": n, "version": v, "file": s.name} for n, v, s in sources]
            result["builder_archive"] = str(house.builder_archive(sources))
    return results


class ActionModule(ActionBase):
    """Runs on the controller only, whatever host the task names."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        missing = [key for key in ("source", "requirements", "targets", "cache") if not args.get(key)]
        if missing:
            raise AnsibleActionFail(f"wheelhouse needs {', '.join(missing)}")
        cache = Path(args["cache"])
        cache.mkdir(parents=True, exist_ok=True)
        python = args.get("python") or sys.executable
        try:
            # Two runs from one controller (two fleets, two test labs) share the
            # cache: one of them at a time resolves, downloads and assembles.
            with (cache / ".lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                houses = make_all(cache, python, Path(args["source"]), args["requirements"], list(args["targets"]))
        except AnsibleActionFail as error:
            # A result, not an exception: the playbook decides how each host fails.
            result.update(changed=False, failed=True, msg=error.message)
            return result
        result.update(changed=False, wheelhouses=houses)
        return result
