"""One host per ASGI server, each behind its own nginx: what clients and operators see."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path

import pytest
import yaml
from websockets.sync.client import connect

from conftest import (
    assert_restarted_after_sigkill,
    assert_socket_only_for_nginx,
    http_get,
    running_units,
    serving_units,
    socket_of,
    unit_exposure,
    unit_of_pid,
    unit_property,
)

SPOOFED_HEADERS = {
    "X-Forwarded-For": {"X-Forwarded-For": "6.6.6.6"},
    "X-Forwarded-Proto": {"X-Forwarded-Proto": "https"},
    "X-Real-IP": {"X-Real-IP": "7.7.7.7"},
    "Forwarded": {"Forwarded": "for=8.8.8.8;proto=https"},
    "all of them": {
        "X-Forwarded-For": "6.6.6.6, 9.9.9.9",
        "X-Forwarded-Proto": "https",
        "X-Real-IP": "7.7.7.7",
        "Forwarded": "for=8.8.8.8;proto=https",
        "X-Forwarded-Host": "evil.example",
    },
}


# Every server the asgi_server role defines, one file each (tests/unit checks the scenario runs them all).
DEFINITIONS = Path(__file__).resolve().parents[3] / "roles" / "asgi_server" / "vars" / "main"
SERVERS = {path.stem.removeprefix("server_") for path in DEFINITIONS.glob("server_*.yml")}


def definition(server: str) -> dict:
    """The server's definition file, as the role reads it."""
    return yaml.safe_load((DEFINITIONS / f"server_{server}.yml").read_text())[f"_asgi_server_definition_{server}"]


def expected_server(host) -> str:
    return host.ansible.get_variables()["asgi_server_kind"]


def docker_gateway(host) -> str:
    """Where the controller's requests come from, through the published ports."""
    return host.check_output("ip route show default").split()[2]


def inside_whoami(host, *headers: str) -> dict:
    options = " ".join(f"-H '{header}'" for header in headers)
    return json.loads(host.check_output(f"curl -sS --max-time 5 {options} http://127.0.0.1/whoami"))


def test_whoami_names_the_hosts_server(host, base_url):
    answer = http_get(f"{base_url}/whoami")
    assert answer.status == 200, answer.body
    assert answer.json()["server"] == expected_server(host)


def test_django_sees_the_true_client_and_scheme(host, base_url):
    seen = http_get(f"{base_url}/whoami").json()
    assert seen["client"] == docker_gateway(host)
    assert seen["scheme"] == "http"
    assert seen["is_secure"] is False
    assert seen["host"] == "127.0.0.1"


@pytest.mark.parametrize("spoof", SPOOFED_HEADERS.values(), ids=SPOOFED_HEADERS.keys())
def test_client_sent_forwarded_headers_change_nothing(host, base_url, spoof):
    seen = http_get(f"{base_url}/whoami", headers=spoof).json()
    assert seen["client"] == docker_gateway(host)
    assert seen["scheme"] == "http"
    assert seen["is_secure"] is False
    assert seen["host"] == "127.0.0.1"


def test_a_trusted_proxy_is_believed(host):
    # 127.0.0.1 is in nginx_proxy_trusted_proxies for this scenario.
    seen = inside_whoami(host, "X-Forwarded-For: 198.51.100.7", "X-Forwarded-Proto: https")
    assert seen["client"] == "198.51.100.7"
    assert seen["scheme"] == "https"
    assert seen["is_secure"] is True


def test_https_makes_django_see_a_secure_request(host):
    port = host.ansible.get_variables()["published_https_port"]
    certificate = host.ansible.get_variables()["nginx_proxy_tls_certificate"]
    context = ssl.create_default_context(cafile=certificate)
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/whoami", context=context, timeout=5) as response:
        seen = json.loads(response.read())
    assert seen["scheme"] == "https"
    assert seen["is_secure"] is True
    assert seen["server"] == expected_server(host)


def test_websocket_echo_through_nginx(host):
    port = host.ansible.get_variables()["published_http_port"]
    with connect(f"ws://127.0.0.1:{port}/ws/echo", open_timeout=5, close_timeout=5) as websocket:
        greeting = json.loads(websocket.recv(timeout=5))
        assert greeting["hello"] is True
        assert greeting["server"] == expected_server(host)
        websocket.send("ping é")
        assert websocket.recv(timeout=5) == "ping é"
        websocket.send(b"\x00\x01binary")
        assert websocket.recv(timeout=5) == b"\x00\x01binary"


def expected_processes(host) -> int:
    """1, or one per CPU (at most 8) for a server that runs no safe workers of its own (its definition's processes)."""
    return 1 if definition(expected_server(host))["processes"] == 1 else min(int(host.check_output("nproc")), 8)


def test_only_the_serving_colours_processes_run_and_each_is_the_hosts_server(host, serving_unit):
    units = serving_units(host)
    assert len(units) == expected_processes(host)
    assert running_units(host) == sorted(units)
    for unit in units:
        assert f"bin/{expected_server(host)} " in unit_property(host, unit, "ExecStart")
    for other in SERVERS - {expected_server(host)}:
        # '[u]vicorn' keeps pgrep from matching the shell that runs it.
        assert host.run(f"pgrep -f 'bin/[{other[0]}]{other[1:]} '").rc == 1


def test_nginx_spreads_requests_over_every_process_of_the_colour(host, base_url):
    units = serving_units(host)
    pids = {http_get(f"{base_url}/whoami").json()["pid"] for _attempt in range(6 * len(units))}
    assert {unit_of_pid(host, pid) for pid in pids} == set(units)
    for unit in units:
        probe = f"curl -sS --max-time 5 --unix-socket {socket_of(unit)} http://localhost/-/health"
        answer = json.loads(host.check_output(f"runuser -u www-data -- {probe}"))
        assert answer["healthy"] is True, (unit, answer)


def test_server_killed_with_sigkill_is_restarted(host, base_url, serving_unit):
    assert_restarted_after_sigkill(host, base_url, serving_unit)


def test_socket_is_reachable_by_nginx_and_not_by_other_users(host, serving_unit):
    assert_socket_only_for_nginx(host, serving_unit)


def test_the_unit_is_sandboxed_and_still_serves(host, base_url, serving_unit):
    """Every server runs under the same hardened unit, exposure at most 2.0."""
    exposure = unit_exposure(host, serving_unit)
    print(f"{serving_unit} on {host.backend.get_hostname()}: exposure {exposure}")
    assert exposure <= 2.0
    assert unit_property(host, serving_unit, "ProtectSystem") == "strict"
    assert unit_property(host, serving_unit, "NoNewPrivileges") == "yes"
    assert http_get(f"{base_url}/db").status == 200
