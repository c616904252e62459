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
