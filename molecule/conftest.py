"""Fixtures shared by the molecule scenarios' testinfra tests.

Requests go from the controller to the ports each scenario publishes on
127.0.0.1, through the host's real nginx, or are made inside a host with curl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

APP = "demo"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[1]))


def ansible_playbook(playbook: str, *arguments: str, inventory: Path | None = None, **popen) -> subprocess.Popen:
    """Start ansible-playbook from the repository against the scenario's inventory (or another one)."""
    environment = dict(
        os.environ, ANSIBLE_COLLECTIONS_PATH=str(PROJECT / ".cache" / "collections"), ANSIBLE_FORCE_COLOR="0"
    )
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(inventory or Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
        str(PROJECT / playbook),
        *arguments,
    ]
    return subprocess.Popen(command, env=environment, text=True, **popen)


def run_playbook(playbook: str, *arguments: str, inventory: Path | None = None, echo: bool = True):
    """Run ansible-playbook to the end; returns (return code, stdout and stderr joined)."""
    process = ansible_playbook(
        playbook, *arguments, inventory=inventory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = process.communicate(timeout=900)[0]
    if echo:
        print(output[-4000:])
    return process.returncode, output


def words(text: str) -> str:
    """Ansible folds long lines: compare messages by their words, not their layout."""
    return " ".join(text.split())


def unit_exposure(host, unit: str) -> float:
    """systemd-analyze's overall exposure score of a unit: 0 (locked down) to 10."""
    last_line = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -n 1")
    # "→ Overall exposure level for demo@blue.service: 1.2 OK :-)"
    return float(last_line.split(f"{unit}:", 1)[1].split()[0])


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> Answer:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310  (loopback only)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def wait_for(probe, timeout: float, interval: float = 0.5):
    """Call probe until it returns a truthy value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, urllib.error.URLError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"gave up after {timeout} s; last result: {last!r}")


def published_http_port(host) -> int:
    return int(host.ansible.get_variables()["published_http_port"])


def active_colour(host) -> str:
    return host.file(f"/var/lib/{APP}/active-colour").content_string.strip()


def serving_units(host) -> list[str]:
    """The units of the serving colour's processes, as many as its state file records."""
    colour = active_colour(host)
    state = json.loads(host.file(f"/var/lib/{APP}/{colour}.json").content_string)
    extra = [f"{APP}@{colour}-{number}.service" for number in range(2, int(state.get("processes", 1)) + 1)]
    return [f"{APP}@{colour}.service", *extra]


def running_units(host) -> list[str]:
    listing = host.check_output(f"systemctl list-units --state=running --plain --no-legend '{APP}@*'")
    return sorted(line.split()[0] for line in listing.splitlines())


def unit_of_pid(host, pid: int) -> str:
    """The systemd unit whose control group holds the process."""
    return host.check_output(f"grep -o -m 1 '{APP}@[a-z0-9-]*[.]service' /proc/{pid}/cgroup")


def main_pid(host, unit: str) -> int:
    return int(host.check_output(f"systemctl show --property MainPID --value {unit}"))


def unit_property(host, unit: str, name: str) -> str:
    return host.check_output(f"systemctl show --property {name} --value {unit}")


def journal(host, unit: str) -> str:
    return host.run(f"journalctl --no-pager --lines 40 --unit {unit}").stdout


def socket_of(unit: str) -> str:
    """The socket a process of a colour binds: demo@blue-2.service -> /run/demo/blue-2.sock."""
    return f"/run/{APP}/{unit.split('@')[1].removesuffix('.service')}.sock"


def health_probe(unit: str) -> str:
    """curl of the health path on the unit's own socket, printing the status code."""
    return f"curl -sS --max-time 5 -o /dev/null -w '%{{http_code}}' --unix-socket {socket_of(unit)} http://localhost/-/health"


def assert_restarted_after_sigkill(host, base_url: str, unit: str) -> None:
    """kill -9 of the server's main process: systemd brings it back, it answers on its socket, nginx answers."""
    killed = main_pid(host, unit)
    host.run(f"kill -9 {killed}")

    def restarted() -> bool:
        pid = main_pid(host, unit)
        return pid not in (0, killed) and host.service(unit).is_running

    wait_for(restarted, timeout=30)
    # Other processes of the colour may answer through nginx meanwhile: the
    # killed one must answer on its own socket again.
    probe = health_probe(unit)
    wait_for(lambda: host.run(probe).stdout == "200", timeout=60)
    answer = wait_for(lambda: (a := http_get(f"{base_url}/whoami")).status == 200 and a, timeout=30)
    assert answer.json()["release"]


def assert_socket_only_for_nginx(host, unit: str) -> None:
    """nginx's user reaches the serving socket; any other user does not."""
    probe = health_probe(unit)
    as_nginx = host.run(f"runuser -u www-data -- {probe}")
    assert as_nginx.stdout == "200", as_nginx.stderr
    # -v: curl names the errno of the refused connect() only in its verbose
    # lines; its final message differs between versions (7.88, 8.14).
    as_other = host.run(f"runuser -u nobody -- {probe} -v")
    assert as_other.rc != 0
    assert "Permission denied" in as_other.stderr, as_other.stderr


@pytest.fixture
def serving_unit(host) -> str:
    unit = f"{APP}@{active_colour(host)}.service"
    if not host.service(unit).is_running:
        pytest.fail(f"{unit} is not running:\n{journal(host, unit)}")
    return unit


@pytest.fixture
def base_url(host) -> str:
    return f"http://127.0.0.1:{published_http_port(host)}"
