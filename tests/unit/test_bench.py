"""bench/: reading wrk's output (measure.py), commands side by side (lab.py), the servers a partial run names
(bench.py), and the verdicts RESULTS.md gives against the targets (report.py)."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lab = load("lab")
measure = load("measure")
bench = load("bench")
report = load("report")

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:80/whoami
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    45.81ms   12.02ms 190.43ms   80.12%
    Req/Sec   350.12     40.33   440.00     71.00%
  Latency Distribution
     50%   43.10ms
     75%   50.02ms
     90%   58.71ms
     99%  {p99}
  6977 requests in 10.01s, 2.49MB read
{errors}Requests/sec:    697.02
Transfer/sec:    254.40KB
"""


@pytest.mark.parametrize(("printed", "milliseconds"), [("91.20ms", 91.2), ("850.00us", 0.85), ("1.20s", 1200.0)])
def test_wrk_p99_is_read_in_milliseconds_whatever_unit_wrk_chose(printed, milliseconds):
    figures = measure.parse_wrk(WRK_OUTPUT.format(p99=printed, errors=""))
    assert figures == {"requests_per_second": 697.02, "p99_ms": milliseconds, "errors": 0}


def test_wrk_errors_count_bad_answers_and_socket_errors():
    errors = "  Socket errors: connect 0, read 3, write 0, timeout 2\n  Non-2xx or 3xx responses: 40\n"
    assert measure.parse_wrk(WRK_OUTPUT.format(p99="91.20ms", errors=errors))["errors"] == 45


def test_wrk_output_without_figures_is_an_error_not_a_zero():
    with pytest.raises(RuntimeError, match="no rate or p99"):
        measure.parse_wrk("unable to connect to 127.0.0.1:80 Connection refused\n")


def load_figures(failed: int, p99: float) -> dict:
    return {"seconds": 30, "sent": 5000, "failed": failed, "failures": [], "p50_ms": 5.0, "p99_ms": p99}


def deploy(hosts: int, cold: float, rerun: float, changed: int = 0) -> dict:
    return {
        "hosts": hosts,
        "cold": {"seconds": cold, "changed": 40, "controller_cpu_seconds": 20},
        "rerun": {"seconds": rerun, "changed": changed, "controller_cpu_seconds": 10},
    }


MEMORY = {
    "at_rest": {"app1": {"nginx": 20000, "app": 100000}},
    "during_switch": {"app1": {"kib": 230000, "nginx": 20000, "app": 210000, "server_processes": 6}},
}

RESULTS = {
    "command": "bench/run",
    "bench_seconds": 2400,
    "machine": {
        "cpu": "test CPU",
        "cpus": 2,
        "memory_gib": 4,
        "kernel": "6",
        "os": "Debian",
        "docker": "28",
        "python": "3.11",
        "ansible_core": "ansible [core 2.19]",
        "commit": "abc1234",
        "date": "2026-11-22 08:00 UTC",
    },
    "deploy": [deploy(1, 80, 10), deploy(6, 110, 14), deploy(3, 100, 12)],
    "deploy_mitogen": [deploy(1, 60, 8), {"hosts": 6, "error": "site.yml failed:\nUNREACHABLE"}],
    "rollouts": [
        {
            "server": "uvicorn",
            "steady": load_figures(0, 40.0),
            "rollout": load_figures(0, 70.0),
            "tutorial_restart": load_figures(120, 90.0),
            "memory_kib": MEMORY,
        }
    ],
    "throughput": [
        {
            "server": "uvicorn",
            "proxied": {"requests_per_second": 700.0, "p99_ms": 90.0},
            "direct": {"requests_per_second": 800.0, "p99_ms": 80.0},
            "direct_with_proxy_headers": {"requests_per_second": 760.0, "p99_ms": 84.0},
        }
    ],
    "workers": [
        {"server": "uvicorn", "workers": 1, "cpus": 2, "proxied": {"requests_per_second": 500.0, "p99_ms": 9.0}},
        {"server": "uvicorn", "workers": 2, "cpus": 2, "proxied": {"requests_per_second": 900.0, "p99_ms": 7.0}},
        {
            "server": "daphne",
            "workers": 1,
            "scaled_by": "processes",
            "cpus": 2,
            "proxied": {"requests_per_second": 300.0, "p99_ms": 20.0},
        },
        {
            "server": "daphne",
            "workers": 2,
            "scaled_by": "processes",
            "cpus": 2,
            "proxied": {"requests_per_second": 570.0, "p99_ms": 12.0},
        },
    ],
    "servers_run": {
        "command": "bench/run --only-servers uvicorn",
        "servers": ["uvicorn"],
        "seconds": 600,
        "machine": {"date": "2026-11-22 10:00 UTC", "commit": "fed9876"},
    },
    "tutorial_throughput": {"command": "uvicorn --loop asyncio", "requests_per_second": 580.0, "p99_ms": 110.0},
    "wheelhouse": {
        "hosts": 6,
        "packages": 13,
        "download_once_seconds": 4.0,
        "download_once_bytes": 20 * 2**20,
        "download_per_host_seconds": 14.0,
        "download_per_host_bytes": 120 * 2**20,
        "wheelhouse_install_seconds": 6.0,
        "command": "bench/run --only-wheelhouse",
        "machine": {"date": "2026-11-22 09:00 UTC", "commit": "def5678"},
    },
}


def verdicts(results: dict) -> dict[str, bool]:
    return {target: met for target, _measured, _ratio, met in report.headline(results)}


@pytest.mark.parametrize("server", bench.SERVERS)
def test_the_server_alone_listens_on_tcp_where_its_definition_says(server):
    """direct_command swaps the colour's socket for TCP, both read from the server's definition file."""
    socket = "/run/demo/%i.sock"
    listen = measure.definition(server)["listen"]
    exec_start = f"/srv/demo/venvs/v1/bin/{server} {listen['unix'].format(socket=socket)} --workers 2"
    direct = measure.direct_command(server, {"ExecStart": exec_start, "socket": socket})
    assert socket not in direct and "127.0.0.1" in direct and str(measure.DIRECT_PORT) in direct
    assert direct == exec_start.replace(
        listen["unix"].format(socket=socket), listen["tcp"].format(host="127.0.0.1", port=measure.DIRECT_PORT)
    )
    with pytest.raises(RuntimeError, match="has no"):
        measure.direct_command(server, {"ExecStart": f"/srv/demo/venvs/v1/bin/{server} --workers 2", "socket": socket})


def test_every_target_met_reads_met():
    assert all(verdicts(RESULTS).values()), verdicts(RESULTS)


@pytest.mark.parametrize(
    ("change", "missed"),
    [
        (lambda r: r["rollouts"][0]["rollout"].update(failed=1), "uvicorn: zero failed"),
        (lambda r: r["rollouts"][0]["tutorial_restart"].update(failed=0), "uvicorn: zero failed"),
        (lambda r: r["rollouts"][0]["rollout"].update(p99_ms=81.0), "uvicorn: p99"),
        (lambda r: r["deploy"][2]["rerun"].update(seconds=16), "3 app host(s): no-change"),
        (lambda r: r["deploy"][2]["rerun"].update(changed=1), "3 app host(s): no-change"),
        (lambda r: r["deploy"][1]["cold"].update(seconds=121), "6 app hosts at most 1.5x one host (cold"),
        (lambda r: r["throughput"][0]["proxied"].update(requests_per_second=679.0), "uvicorn: through nginx"),
    ],
)
def test_a_figure_past_its_target_reads_missed(change, missed):
    results = copy.deepcopy(RESULTS)
    change(results)
    failing = [target for target, met in verdicts(results).items() if not met]
    assert len(failing) == 1, failing
    assert failing[0].startswith(missed)


def test_results_md_and_chart_hold_the_figures(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(__import__("json").dumps(RESULTS))
    notes = tmp_path / "notes.md"
    notes.write_text("## Why\n\nBecause.\n")
    output = tmp_path / "RESULTS.md"
    causes = tmp_path / "p99-causes.json"
    causes.write_text(
        __import__("json").dumps(
            {
                "command": "bench/p99_causes.py",
                "machine": RESULTS["machine"],
                "server": "uvicorn",
                "hosts": 3,
                "steady": load_figures(0, 10.0),
                "no_change_run": load_figures(0, 40.0),
                "switch_alone": load_figures(0, 15.0),
                "rollout_mitogen": load_figures(0, 30.0),
            }
        )
    )
    arguments = ["--results", str(results), "--notes", str(notes), "--p99-causes", str(causes)]
    assert report.main([*arguments, "--output", str(output)]) == 0
    text = output.read_text()
    assert "| uvicorn | rollout | 30 | 5000 | 0 | 5.0 | 70.0 | 1.75 |" in text
    assert "| Ansible | 6 | 110 | 40 | 14 | 0 | 0.13 | 20 / 10 | 3.3 / 1.7 |" in text
    assert "Mitogen, 6 host(s), failed: UNREACHABLE" in text
    assert "| uvicorn | app1 | 117 | 225 | 6 |" in text
    assert "| uvicorn | 700 | 90.0 | 800 | 80.0 | 0.88 | 760 |" in text
    assert "| uvicorn | 2 | workers | 2 | 900 | 7.0 | 1.80x |" in text
    assert "| daphne | 2 | processes | 2 | 570 | 12.0 | 1.90x |" in text
    assert "`bench/run --only-servers uvicorn` (10 minutes on 2026-11-22 10:00 UTC, commit `fed9876`)" in text
    assert "commit `abc1234`" in text
    assert "`bench/run --only-wheelhouse` on 2026-11-22 09:00 UTC, commit `def5678`" in text
    assert "shipping is 10.0 s against 20.0 s (0.50x), 6x less traffic" in text
    assert "14.0 s and 120 MiB from the index, against 4.0 s and 20 MiB once" in text
    assert "| `rollback.yml` | the switch alone" in text
    assert "| 30 | 5000 | 0 | 5.0 | 15.0 | 1.50 |" in text
    assert text.rstrip().endswith("Because.")
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_commands_run_side_by_side_and_a_failure_names_what_failed():
    assert lab.all_at_once([["true"], ["true"]], "nothing") >= 0
    with pytest.raises(RuntimeError, match="the install failed: broken"):
        lab.all_at_once([["true"], ["sh", "-c", "echo broken >&2; exit 3"]], "the install")


def test_a_partial_run_names_only_servers_the_role_defines():
    assert bench.named_servers("--only-servers", "uvicorn,daphne") == ["uvicorn", "daphne"]
    with pytest.raises(SystemExit, match="no such server"):
        bench.named_servers("--only-servers", "uvicorn,tornado")


def test_the_versions_report_judges_each_target_against_the_earlier_version():
    sys.path.insert(0, str(BENCH))
    versions = load("versions")

    def run(version, cold, unchanged, rollout, p99):
        return {
            "version": version,
            "cold": {"seconds": cold},
            "no_change": {"seconds": unchanged, "changed": 0, "controller_cpu_seconds": 1.0},
            "steady": {"p99_ms": 10.0},
            "rollout": {"playbook_seconds": rollout, "failed": 0, "sent": 1000, "p99_ms": p99},
            "tasks_per_app_host": {"cold": 100.0, "no_change": 90.0},
        }

    machine = {"date": "2026-12-02 07:00 UTC", "commit": "abc1234", "cpus": 2}
    text = versions.report({"machine": machine, "runs": [run("before", 100, 60, 200, 80), run("now", 90, 10, 40, 30)]})
    assert "| new release under load at most 0.25x the earlier version's, zero failed | 0.2x, 0 failed | met |" in text
    assert "| no-change at most 0.2x the earlier version's | 0.17x | met |" in text
    assert "| no-change at most 0.15x a cold deploy, zero changes | 0.11x, changed=0 | met |" in text
    assert "| p99 during the rollout at most 2x steady (uvicorn) | 3.0x | **missed** |" in text
