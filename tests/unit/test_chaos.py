"""bench/chaos.py's pure parts: the seeded schedule of faults and the window of failures."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import chaos  # bench/ is not a package: the campaign runner, by path


@pytest.mark.parametrize("seed", [1, 8, 12345])
def test_thirty_runs_give_every_fault_at_least_three_times(seed):
    kinds = Counter(chaos.schedule(seed, 30))
    assert set(kinds) == set(chaos.FAULTS)
    assert min(kinds.values()) >= 3


def test_a_seed_replays_the_same_schedule_and_a_shorter_campaign_is_its_beginning():
    assert chaos.schedule(8, 30) == chaos.schedule(8, 30)
    assert chaos.schedule(8, 5) == chaos.schedule(8, 30)[:5]
    assert chaos.schedule(8, 30) != chaos.schedule(9, 30)
    # CI's five runs: five kinds, no kind twice.
    assert len(set(chaos.schedule(8, 5))) == 5


def test_the_covered_faults_are_faults():
    assert chaos.COVERED < set(chaos.FAULTS)


@pytest.mark.parametrize(
    ("moments", "window"),
    [
        ([], 0.0),
        ([5.0], 0.0),
        ([5.0, 5.5, 6.9, 8.0], 3.0),  # each within 2 s of the one before
        ([1.0, 1.5, 10.0, 13.5], 0.5),  # 3.5 s apart: two stretches, the longest counts
        ([10.0, 1.0, 2.0, 11.0, 12.5], 2.5),  # in any order
    ],
)
def test_the_failure_window_is_the_longest_stretch_of_failures(moments, window):
    assert chaos.failure_window(moments) == window


def by_kind(get=0, slow=0, post=0, websocket=0):
    return {
        name: {"sent": 100, "failed": failed}
        for name, failed in (("get", get), ("slow", slow), ("post", post), ("websocket", websocket))
    }


CONFIG = chaos.load_config()


@pytest.mark.parametrize("kind", ["controller_sigkill", "controller_sigint"])
def test_the_controllers_faults_may_fail_nothing(kind):
    assert chaos.covered_breach(kind, by_kind(), CONFIG) == ""
    assert chaos.covered_breach(kind, by_kind(websocket=1), CONFIG)
    assert chaos.covered_breach(kind, by_kind(post=1), CONFIG)


@pytest.mark.parametrize("kind", ["server_kill", "app_nginx_kill"])
def test_a_killed_process_may_take_only_the_sessions_and_writes_it_held(kind):
    held = by_kind(post=CONFIG.post_workers, websocket=CONFIG.websocket_sessions)
    assert chaos.covered_breach(kind, held, CONFIG) == ""
    assert chaos.covered_breach(kind, by_kind(get=1), CONFIG)
    assert chaos.covered_breach(kind, by_kind(slow=1), CONFIG)
    assert chaos.covered_breach(kind, by_kind(websocket=CONFIG.websocket_sessions + 1), CONFIG)
    assert chaos.covered_breach(kind, by_kind(post=CONFIG.post_workers + 1), CONFIG)


def test_the_other_faults_are_measured_not_judged_by_their_failures():
    assert chaos.covered_breach("lb_nginx_kill", by_kind(get=200, post=40, websocket=6), CONFIG) == ""


def test_a_recorded_run_is_judged_again_under_the_rule_keeping_its_other_breaches():
    run = {
        "fault": "server_kill",
        "load": {"by_kind": by_kind(websocket=1)},
        "breaches": [f"1 {chaos.COVERED_FAILURES}: ['websocket ...']", "rollout lock left on ['app1']"],
    }
    assert chaos.judged(run, CONFIG) == ["rollout lock left on ['app1']"]
