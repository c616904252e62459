"""The canary: the rollout_requests module on a request log as nginx writes it, and the judgement."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
MODULE = PLUGINS / "modules" / "rollout_requests.py"

spec = importlib.util.spec_from_file_location("canary_filter", PLUGINS / "filter" / "canary.py")
canary = importlib.util.module_from_spec(spec)
spec.loader.exec_module(canary)

BUDGET = {"max_error_rate": 0.01, "max_error_ratio": 2, "max_latency_ratio": 2, "latency_floor_ms": 50}


def line(at: float, status: int = 200, seconds: float = 0.004, release: str = "r2", uri: str = "/") -> str:
    """A line of the site's log_format (escape=json)."""
    return json.dumps(
        {"time": at, "status": status, "request_time": seconds, "upstream_time": "0.004", "uri": uri}
        | {"method": "GET", "colour": "green", "release": release}
    )


def run(tmp_path: Path, arguments: dict) -> dict:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": arguments | {"_ansible_check_mode": True}}))
    answer = subprocess.run(  # noqa: S603  (this interpreter and the module's own file)
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False
    )
    return json.loads(answer.stdout)


def test_the_module_counts_each_release_in_each_window_across_the_rotated_file(tmp_path):
    log = tmp_path / "demo.requests.json"
    # The rotated file holds the older lines; the window "before" reaches into it.
    rotated = [line(1000 + n / 10, release="r1", seconds=0.010) for n in range(100)]
    rotated.append(line(1009.5, status=502, release="r1"))
    (tmp_path / "demo.requests.json.1").write_text("\n".join(rotated) + "\n")
    current = [line(1010 + n / 10, status=500 if n % 5 == 0 else 200, seconds=0.020) for n in range(100)]
    current += [line(1015, uri="/-/health"), line(1016, status=101, seconds=30.0), "not json", line(1030)]
    log.write_text("\n".join(current) + "\n")
    answer = run(
        tmp_path,
        {
            "path": str(log),
            "windows": {"before": {"since": 1000, "until": 1010}, "canary": {"since": 1010, "until": 1020}},
            "exclude_paths": ["/-/health"],
        },
    )
    assert answer["changed"] is False, answer
    before, window = answer["windows"]["before"], answer["windows"]["canary"]
    assert before["r1"]["requests"] == 101 and before["r1"]["errors"] == 1 and before["r1"]["p95_ms"] == 10
    assert window["r2"]["requests"] == 100 and window["r2"]["errors"] == 20 and window["r2"]["p95_ms"] == 20
    assert window["r2"]["latency_ms"] == {"20": 100}
    assert answer["lines"]["unreadable"] == 1


def test_the_module_stops_reading_well_before_the_window(tmp_path):
    log = tmp_path / "demo.requests.json"
    log.write_text("\n".join(line(float(at)) for at in range(100000)) + "\n")
    answer = run(tmp_path, {"path": str(log), "windows": {"canary": {"since": 99990, "until": 100000}}})
    assert answer["windows"]["canary"]["r2"]["requests"] == 10
    assert answer["lines"]["read"] < 100


def test_the_module_reads_no_log_as_no_requests_and_refuses_a_bad_window(tmp_path):
    answer = run(tmp_path, {"path": str(tmp_path / "none.json"), "windows": {"canary": {"since": 1, "until": 2}}})
    assert answer["windows"] == {"canary": {}}
    bad = run(tmp_path, {"path": str(tmp_path / "none.json"), "windows": {"canary": {"since": 3, "until": 2}}})
    assert bad.get("failed") is True and "window canary" in bad["msg"], bad
    relative = run(tmp_path, {"path": "log.json", "windows": {}})
    assert relative.get("failed") is True


def figures(requests: int, errors: int, ms: int, release: str) -> dict:
    return {release: {"requests": requests, "errors": errors, "p95_ms": ms, "latency_ms": {str(ms): requests}}}


def test_a_release_over_the_error_budget_is_stopped_naming_what_was_seen():
    readings = {
        "app1": {"canary": figures(412, 75, 12, "7f3c2e")},
        "app2": {"canary": figures(500, 0, 11, "v1")},
        "app3": {"canary": figures(500, 1, 11, "v1")},
    }
    verdict = canary.canary_verdict(readings, "7f3c2e", ["app1"], ["app2", "app3"], BUDGET | {"min_requests": 50}, 30)
    assert verdict["judged"] is True and verdict["verdict"] == "stopped"
    assert verdict["message"] == (
        "app1 on 7f3c2e: 18.2% 5xx (budget 1%) over 30 s, 412 requests, against 0.1% on app2, app3"
    )
    assert verdict["canary"]["error_rate"] == 0.182 and verdict["baseline"]["requests"] == 1000


def test_errors_the_previous_release_has_too_raise_the_budget():
    readings = {"app1": {"canary": figures(100, 5, 12, "r2")}, "app2": {"canary": figures(100, 4, 12, "r1")}}
    verdict = canary.canary_verdict(readings, "r2", ["app1"], ["app2"], BUDGET | {"min_requests": 50}, 10)
    assert verdict["verdict"] == "passed", verdict["message"]
    assert verdict["budget"]["error_budget"] == 0.08


def test_a_slower_release_is_stopped_on_its_p95_but_not_under_the_floor():
    readings = {"app1": {"canary": figures(300, 0, 400, "r2")}, "app2": {"canary": figures(300, 0, 80, "r1")}}
    verdict = canary.canary_verdict(readings, "r2", ["app1"], ["app2"], BUDGET | {"min_requests": 50}, 10)
    assert verdict["verdict"] == "stopped"
    assert "p95 400 ms, 5.0x the 80 ms on app2 (budget 2x)" in verdict["message"]
    fast = {"app1": {"canary": figures(300, 0, 30, "r2")}, "app2": {"canary": figures(300, 0, 5, "r1")}}
    assert canary.canary_verdict(fast, "r2", ["app1"], ["app2"], BUDGET | {"min_requests": 50}, 10)["verdict"] == (
        "passed"
    )


def test_without_hosts_on_the_previous_release_the_batch_is_compared_with_its_window_before_the_switch():
    readings = {"app1": {"canary": figures(200, 0, 10, "r2"), "before": figures(180, 0, 9, "r1")}}
    verdict = canary.canary_verdict(readings, "r2", ["app1"], [], BUDGET | {"min_requests": 50}, 10)
    assert verdict["verdict"] == "passed" and verdict["baseline"]["window"] == "before switch"
    assert verdict["message"].endswith("against 0.0%, p95 9 ms on app1 before the switch: within budget")


@pytest.mark.parametrize(("too_few", "expected"), [("continue", "unjudged"), ("stop", "stopped")])
def test_too_few_requests_are_not_judged(too_few, expected):
    readings = {"app1": {"canary": figures(10, 5, 10, "r2")}, "app2": {"canary": figures(10, 0, 9, "r1")}}
    budget = BUDGET | {"min_requests": 50, "too_few": too_few}
    verdict = canary.canary_verdict(readings, "r2", ["app1"], ["app2"], budget, 10)
    assert verdict["judged"] is False and verdict["verdict"] == expected
    assert "10 requests over 10 s, fewer than 50: could not judge" in verdict["message"]
