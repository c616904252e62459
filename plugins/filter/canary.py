# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Judge a canary window: what the new release's users got against those of the previous one."""

from __future__ import annotations

from typing import Any

DOCUMENTATION = r"""
name: canary_verdict
short_description: Judge a batch's canary window against the hosts still on the previous release
version_added: 0.3.0
description:
  - Merges what M(django_asgi.rollout.rollout_requests) read on each host, and compares the new
    release's share of 5xx answers and p95 request time on the batch's hosts with the previous
    release's, on the hosts still serving it over the same window, or else on the batch's own
    hosts over the window before their switch.
  - Returns the figures, whether it judged (enough requests), the verdict (V(passed), V(stopped),
    or V(unjudged) when it went on without judging) and the line that says so.
options:
  _input:
    description: Per host, what M(django_asgi.rollout.rollout_requests) returned as C(windows).
    type: dict
    required: true
  release:
    description: The new release's id.
    type: str
    required: true
  canary_hosts:
    description: The batch's hosts, on the new release.
    type: list
    required: true
  baseline_hosts:
    description: The hosts still on the previous release; empty to compare with the batch's window before its switch.
    type: list
    required: true
  budget:
    description: >-
      C(max_error_rate) (share of 5xx, 0.01 for 1%), C(max_error_ratio) (times the previous
      release's share), C(max_latency_ratio), C(latency_floor_ms), C(min_requests), C(too_few)
      (V(continue) or V(stop)).
    type: dict
    required: true
  seconds:
    description: The window's length.
    type: float
    required: true
"""

EXAMPLES = r"""
- ansible.builtin.set_fact:
    verdict: >-
      {{ readings | django_asgi.rollout.canary_verdict(release='7f3c2e', canary_hosts=['app1'],
         baseline_hosts=['app2', 'app3'], budget=budget, seconds=30) }}
"""

RETURN = r"""
_value:
  description: >-
    C(judged), C(verdict), C(message), C(reasons), the new release's C(canary) figures and the
    previous release's C(baseline) figures (C(hosts), C(window): C(same) or C(before switch),
    C(requests), C(errors), C(error_rate), C(p95_ms)), and the C(budget) applied.
  type: dict
"""


def merge(readings: dict[str, Any], hosts: list[str], window: str, keep) -> dict[str, Any]:
    """The requests of the releases ``keep`` accepts in ``window`` on ``hosts``, as one set of figures."""
    requests = errors = 0
    latency: dict[int, int] = {}
    for host in hosts:
        for release, figures in ((readings.get(host) or {}).get(window) or {}).items():
            if not keep(release):
                continue
            requests += int(figures["requests"])
            errors += int(figures["errors"])
            for ms, count in figures.get("latency_ms", {}).items():
                latency[int(ms)] = latency.get(int(ms), 0) + int(count)
    ordered = sorted(latency.items())
    p95 = 0
    if requests:
        rank, seen = max(-(-95 * requests // 100), 1), 0
        for ms, count in ordered:
            seen += count
            if seen >= rank:
                p95 = ms
                break
    return {
        "hosts": list(hosts),
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 4) if requests else 0.0,
        "p95_ms": p95,
    }


def percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def canary_verdict(
    readings: dict[str, Any],
    release: str,
    canary_hosts: list[str],
    baseline_hosts: list[str],
    budget: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    max_error_rate = float(budget.get("max_error_rate", 0.01))
    max_error_ratio = float(budget.get("max_error_ratio", 2))
    max_latency_ratio = float(budget.get("max_latency_ratio", 2))
    latency_floor_ms = float(budget.get("latency_floor_ms", 50))
    min_requests = int(budget.get("min_requests", 50))
    too_few = str(budget.get("too_few", "continue"))
    release = str(release)
    canary = merge(readings, canary_hosts, "canary", lambda name: name == release)
    if baseline_hosts:
        baseline = merge(readings, baseline_hosts, "canary", lambda name: name != release)
        baseline["window"] = "same"
        against = ", ".join(baseline_hosts)
    else:
        baseline = merge(readings, canary_hosts, "before", lambda name: name != release)
        baseline["window"] = "before switch"
        against = ", ".join(canary_hosts) + " before the switch"
    compared = baseline["requests"] >= min_requests
    error_budget = max(max_error_rate, max_error_ratio * baseline["error_rate"]) if compared else max_error_rate
    latency_budget = max(max_latency_ratio * baseline["p95_ms"], latency_floor_ms) if compared else None
    who = f"{', '.join(canary_hosts)} on {release}"
    over = f"over {seconds:g} s, {canary['requests']} requests"
    figures = {
        "canary": canary,
        "baseline": baseline,
        "budget": {
            "max_error_rate": max_error_rate,
            "max_error_ratio": max_error_ratio,
            "error_budget": round(error_budget, 4),
            "max_latency_ratio": max_latency_ratio,
            "latency_floor_ms": latency_floor_ms,
            "min_requests": min_requests,
        },
        "seconds": float(seconds),
        "release": release,
    }
    if canary["requests"] < min_requests:
        stop = too_few == "stop"
        message = (
            f"{who}: {canary['requests']} requests over {seconds:g} s, fewer than {min_requests}: "
            f"could not judge, {'the rollout stops' if stop else 'the rollout goes on'}"
        )
        return figures | {
            "judged": False,
            "verdict": "stopped" if stop else "unjudged",
            "reasons": [f"fewer than {min_requests} requests"],
            "message": message,
        }
    reasons = []
    if canary["error_rate"] > error_budget:
        seen = f"{percent(canary['error_rate'])} 5xx (budget {error_budget * 100:g}%) {over}"
        if compared:
            seen += f", against {percent(baseline['error_rate'])} on {against}"
        reasons.append(seen)
    if latency_budget is not None and canary["p95_ms"] > latency_budget:
        ratio = canary["p95_ms"] / baseline["p95_ms"] if baseline["p95_ms"] else float("inf")
        reasons.append(
            f"p95 {canary['p95_ms']} ms, {ratio:.1f}x the {baseline['p95_ms']} ms on {against} "
            f"(budget {max_latency_ratio:g}x)" + ("" if reasons else f" {over}")
        )
    if reasons:
        return figures | {
            "judged": True,
            "verdict": "stopped",
            "reasons": reasons,
            "message": f"{who}: {'; '.join(reasons)}",
        }
    seen = f"{percent(canary['error_rate'])} 5xx, p95 {canary['p95_ms']} ms {over}"
    if compared:
        seen += f", against {percent(baseline['error_rate'])}, p95 {baseline['p95_ms']} ms on {against}"
    else:
        seen += f", too few requests on {against} ({baseline['requests']}) to compare with"
    return figures | {"judged": True, "verdict": "passed", "reasons": [], "message": f"{who}: {seen}: within budget"}


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"canary_verdict": canary_verdict}
