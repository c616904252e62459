"""The rollout_colour module's decisions against a fake systemd, and the unit names it shares with the filters."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.django_asgi.rollout.plugins.module_utils import colour_units as names

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def load(relative: str):
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_"), PLUGINS / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


colour = load("modules/rollout_colour.py")
processes = load("filter/processes.py")
colour_filter = load("filter/colour_units.py")

WORKER = {"name": "worker", "command": ["celery", "worker"], "count": 2}
BEAT = {"name": "beat", "command": ["celery", "beat"], "hosts": "one"}
TIMER = {"name": "sessions", "command": ["clearsessions"], "schedule": "daily"}


def extra(items=(WORKER, BEAT), timers=(TIMER,), one_host=True, colour_name="blue"):
    return processes.release_processes(
        list(items), list(timers), app="demo", colour=colour_name, one_host=one_host, stop_timeout=30
    )


class FakeSystemd:
    """systemctl, journalctl and pgrep as the module calls them, on units held in sets."""

    def __init__(self, unit_dir: Path, check: bool = False, active=(), enabled=(), restarts=()) -> None:
        self.unit_dir = unit_dir
        self.check = check
        self.active = set(active)
        self.enabled = set(enabled)
        self.restarts = set(restarts)
        # Units that die right after their start.
        self.broken = set()
        self.shutting_down = 0
        self.calls = []
        self.slept = 0.0
        self.clock = 0.0

    def run(self, argv):
        self.calls.append(list(argv))
        command, *args = argv
        if command == "journalctl":
            return 0, "Dec 06 21:23:43 app1 demo[1]: the journal\n", ""
        if command == "pgrep":
            self.shutting_down -= 1
            return (0 if self.shutting_down >= 0 else 1), "", ""
        assert command == "systemctl", argv
        verb, *rest = args
        units = [word for word in rest if not word.startswith("-")]
        if verb == "is-active":
            return (0 if units[0] in self.active else 3), "", ""
        if verb == "is-enabled":
            return (0 if units[0] in self.enabled else 1), "", ""
        if verb == "list-units":
            known = self.active if "--all" not in rest else self.active | self.enabled
            listed = sorted(unit for unit in known if any(fnmatch.fnmatchcase(unit, glob) for glob in units))
            return 0, "".join(f"{unit} loaded active running x\n" for unit in listed), ""
        if verb == "show":
            unit, prop = units[-1], rest[rest.index("--property") + 1]
            if prop == "ActiveState":
                return 0, ("active\n" if unit in self.active else "failed\n"), ""
            return 0, ("2\n" if unit in self.restarts else "0\n"), ""
        assert not self.check, f"check mode ran {argv}"
        if verb == "start":
            self.active |= set(units) - self.broken
        elif verb == "stop":
            self.active -= set(units)
        elif verb == "disable":
            self.enabled -= set(units)
            self.active -= set(units)
        elif verb == "enable":
            self.enabled |= set(units)
        return 0, "", ""

    def sleep(self, seconds):
        self.slept += seconds
        self.clock += seconds

    def now(self):
        return self.clock

    def changing_calls(self):
        return [
            call
            for call in self.calls
            if call[0] == "systemctl" and call[1] not in {"is-active", "is-enabled", "list-units", "show"}
        ]


def params(action, unit_dir, **given):
    defaults = {name: spec.get("default") for name, spec in colour.ARGUMENT_SPEC.items()}
    return {**defaults, "action": action, "app": "demo", "unit_dir": str(unit_dir), **given}


# The naming scheme


@pytest.mark.parametrize("count", [1, 2, 5])
def test_the_filters_and_the_module_name_a_colours_units_alike(count):
    web = colour_filter.colour_units("demo", "green", count, "/run/demo")
    assert web["units"] == names.web_units("demo", "green", count)
    assert web["units"][0] == "demo@green.service" and web["units"][1:] == [
        f"demo@green-{n}.service" for n in range(2, count + 1)
    ]
    assert web["sockets"] == [f"/run/demo/{instance}.sock" for instance in web["instances"]]
    assert [link["path"] for link in web["dropin_links"]] == [
        f"/etc/systemd/system/{unit}.d" for unit in web["units"][1:]
    ]
    assert {link["src"] for link in web["dropin_links"]} <= {"/etc/systemd/system/demo@green.service.d"}
    items = extra(items=({**WORKER, "count": count}, BEAT), colour_name="green")
    assert [unit for item in items for unit in item["units"]] == names.all_extra_units("demo", items, "green")
    every = web["units"] + names.all_extra_units("demo", items, "green")
    ours, theirs = names.colour_pattern("demo", "green"), names.colour_pattern("demo", "blue")
    assert all(ours.match(unit) and not theirs.match(unit) for unit in every)
    assert not ours.match("demo2@green.service") and not ours.match("other-worker-green@1.service")
    files = [item["unit_file"] for item in items] + [item["timer_file"] for item in items if item["kind"] == "timer"]
    assert all(names.extra_file_pattern("demo", "green").match(name) for name in files)
    assert not names.extra_file_pattern("demo", "green").match("demo@green.service")


def test_without_a_colour_the_filter_names_no_unit_and_the_module_names_them_for_the_colour_it_reads():
    items = extra(colour_name="")
    assert all("units" not in item and "unit_file" not in item for item in items)
    assert names.all_extra_units("demo", items, "blue") == [
        "demo-worker-blue@1.service",
        "demo-worker-blue@2.service",
        "demo-beat-blue@1.service",
        "demo-sessions-blue.timer",
    ]
    assert names.journal_unit("demo-sessions-blue.timer") == "demo-sessions-blue.service"


# retire


def unit_dir_with(tmp_path, files=(), wants=()):
    unit_dir = tmp_path / "system"
    (unit_dir / "multi-user.target.wants").mkdir(parents=True)
    (unit_dir / "timers.target.wants").mkdir()
    for name in files:
        (unit_dir / name).write_text("[Unit]\n")
    for name in wants:
        folder = "timers.target.wants" if name.endswith(".timer") else "multi-user.target.wants"
        (unit_dir / folder / name).symlink_to(unit_dir / name)
    return unit_dir


@pytest.mark.parametrize(("before", "after"), [(1, 1), (4, 2), (2, 3)])
@pytest.mark.parametrize("with_extra", [False, True])
def test_retire_stops_every_unit_of_the_previous_colour_and_enables_the_serving_ones(
    tmp_path, before, after, with_extra
):
    old_items = extra(colour_name="blue") if with_extra else []
    new_items = extra(colour_name="green") if with_extra else []
    old = names.web_units("demo", "blue", before) + names.all_extra_units("demo", old_items, "blue")
    new = names.web_units("demo", "green", after) + names.all_extra_units("demo", new_items, "green")
    old_files = [name for item in old_items for name in names.extra_unit_files("demo", item, "blue")]
    # Another app's units and the serving colour's own files are left alone.
    bystanders = ["demo2@blue.service", "demo-worker-green@.service", "other-worker-blue@.service"]
    unit_dir = unit_dir_with(
        tmp_path, files=[*old_files, *bystanders], wants=sorted({old[0], old[-1], "demo2@blue.service"})
    )
    host = FakeSystemd(unit_dir, active={*old[1:], "demo2@blue.service", *new}, enabled={old[0], new[0]})
    host.shutting_down = 3
    result = colour.run(
        host,
        params(
            "retire",
            unit_dir,
            colour="green",
            previous="blue",
            processes=after,
            extra=new_items,
            release_dir="/srv/demo/releases/r2",
            other_record=str(tmp_path / "blue.json"),
        ),
    )
    assert result["changed"] is True, result
    assert result["stopped"] == sorted(old)
    assert result["removed"] == sorted(old_files)
    assert result["enabled"] == new[1:]
    assert host.active == {"demo2@blue.service", *new} and host.enabled == set(new)
    assert sorted(os.listdir(unit_dir)) == sorted(["multi-user.target.wants", "timers.target.wants", *bystanders])
    assert (
        ["systemctl", "daemon-reload"] in host.calls if old_files else ["systemctl", "daemon-reload"] not in host.calls
    )
    # It waited for nginx's old workers.
    assert host.slept == pytest.approx(0.6)
    assert result["ansible_facts"] == {"asgi_server_releases_in_use": ["/srv/demo/releases/r2"]}
    assert result["msg"].splitlines()[0] == f"stopped and disabled: {' '.join(sorted(old))}"


def test_retire_in_check_mode_changes_nothing_and_says_what_it_would_do(tmp_path):
    items = extra(colour_name="blue")
    old_files = [name for item in items for name in names.extra_unit_files("demo", item, "blue")]
    unit_dir = unit_dir_with(tmp_path, files=old_files)
    host = FakeSystemd(unit_dir, check=True, active={"demo@blue.service", "demo-worker-blue@1.service"})
    host.shutting_down = 100
    (tmp_path / "blue.json").write_text(json.dumps({"release": {"dir": "/srv/demo/releases/r1"}}))
    result = colour.run(
        host,
        params(
            "retire",
            unit_dir,
            colour="green",
            previous="blue",
            release_dir="/srv/r2",
            other_record=str(tmp_path / "blue.json"),
        ),
    )
    assert result["changed"] is True
    assert host.changing_calls() == [] and host.slept == 0
    assert sorted(os.listdir(unit_dir)) == sorted(["multi-user.target.wants", "timers.target.wants", *old_files])
    assert result["msg"].splitlines() == [
        "would be stopped and disabled: demo-worker-blue@1.service demo@blue.service",
        f"would be removed: {' '.join(sorted(old_files))}",
        "would be enabled at boot: demo@green.service",
    ]
    assert result["ansible_facts"]["asgi_server_releases_in_use"] == ["/srv/r2", "/srv/demo/releases/r1"]
    assert "demo@green.service disabled" in result["diff"]["before"]


def test_retire_of_a_colour_that_stays_only_enables_and_waits_for_nothing(tmp_path):
    unit_dir = unit_dir_with(tmp_path)
    host = FakeSystemd(unit_dir, active={"demo@blue.service"}, enabled={"demo@blue.service"})
    host.shutting_down = 100
    result = colour.run(host, params("retire", unit_dir, colour="blue", previous="", release_dir="/srv/r1"))
    assert result["changed"] is False and result["msg"] == "" and host.changing_calls() == [] and host.slept == 0


def test_retire_gives_up_the_drain_wait_at_its_timeout(tmp_path):
    unit_dir = unit_dir_with(tmp_path)
    host = FakeSystemd(unit_dir)
    host.shutting_down = 10_000
    colour.run(host, params("retire", unit_dir, colour="green", previous="blue", drain_timeout=2, release_dir="/r"))
    assert 2.0 <= host.slept < 2.3


# unchanged


def serving(tmp_path, digest="d1", colour_name="blue"):
    (tmp_path / "active-colour").write_text(f"{colour_name}\n")
    if digest is not None:
        (tmp_path / "host-digest").write_text(f"{digest}\n")
    return {"state_file": str(tmp_path / "active-colour"), "digest_file": str(tmp_path / "host-digest")}


def test_unchanged_when_the_digest_matches_and_nginx_and_every_unit_of_the_serving_colour_run(tmp_path):
    files = serving(tmp_path, colour_name="green")
    items = extra(colour_name="")
    running = {"nginx.service", *names.web_units("demo", "green", 2), *names.all_extra_units("demo", items, "green")}
    host = FakeSystemd(tmp_path, active=running)
    result = colour.run(host, params("unchanged", tmp_path, processes=2, extra=items, digest="d1", **files))
    assert result["ansible_facts"] == {"asgi_server_unchanged": True} and result["changed"] is False
    assert (tmp_path / "host-digest").exists()


@pytest.mark.parametrize("check", [False, True])
@pytest.mark.parametrize("why", ["digest", "worker", "nginx", "second process"])
def test_a_record_that_no_longer_counts_is_forgotten_but_not_in_check_mode(tmp_path, check, why):
    files = serving(tmp_path)
    items = extra(colour_name="")
    running = {"nginx.service", *names.web_units("demo", "blue", 2), *names.all_extra_units("demo", items, "blue")}
    running -= {
        "worker": {"demo-worker-blue@2.service"},
        "nginx": {"nginx.service"},
        "second process": {"demo@blue-2.service"},
    }.get(why, set())
    host = FakeSystemd(tmp_path, check=check, active=running)
    result = colour.run(
        host, params("unchanged", tmp_path, processes=2, extra=items, digest="d2" if why == "digest" else "d1", **files)
    )
    assert result["ansible_facts"] == {"asgi_server_unchanged": False}
    assert result["changed"] is True and result["msg"] == "forgotten"
    assert (tmp_path / "host-digest").exists() is check
    assert result["diff"]["before"] == "d1\n"


def test_no_record_and_no_digest_is_neither_unchanged_nor_a_change(tmp_path):
    files = serving(tmp_path, digest=None)
    host = FakeSystemd(tmp_path, active={"nginx.service", "demo@blue.service"})
    for digest in ("", "d1"):
        result = colour.run(host, params("unchanged", tmp_path, digest=digest, **files))
        assert result["ansible_facts"] == {"asgi_server_unchanged": False} and result["changed"] is False
    # An empty digest never matches, even an empty record.
    (tmp_path / "host-digest").write_text("\n")
    assert colour.run(host, params("unchanged", tmp_path, digest="", **files))["msg"] == "forgotten"


# start


def test_start_stops_the_previous_colours_one_host_processes_and_starts_what_is_not_running(tmp_path):
    items = extra(colour_name="green")
    host = FakeSystemd(
        tmp_path, active={"demo-beat-blue@1.service", "demo-worker-blue@1.service", "demo-worker-green@1.service"}
    )
    result = colour.run(host, params("start", tmp_path, colour="green", previous="blue", settle=7, extra=items))
    assert result.get("failed") is not True, result
    assert result["stopped"] == ["demo-beat-blue@1.service"]
    # Those of one host first.
    assert result["started"] == [
        "demo-beat-green@1.service",
        "demo-worker-green@2.service",
        "demo-sessions-green.timer",
    ]
    assert host.slept == 7 and "demo-worker-blue@1.service" in host.active
    assert result["msg"].splitlines() == [
        "stopped on the previous colour: demo-beat-blue@1.service",
        "started: demo-beat-green@1.service demo-worker-green@2.service demo-sessions-green.timer",
    ]
    again = colour.run(host, params("start", tmp_path, colour="green", previous="blue", settle=7, extra=items))
    assert again["changed"] is False and again["started"] == [] and again["stopped"] == []


def test_the_settle_gate_fails_naming_the_unit_and_reports_what_to_undo(tmp_path):
    items = extra(colour_name="green")
    host = FakeSystemd(tmp_path, active={"demo-beat-blue@1.service"}, restarts={"demo-sessions-green.timer"})
    host.broken = {"demo-worker-green@2.service"}
    result = colour.run(host, params("start", tmp_path, colour="green", previous="blue", settle=5, extra=items))
    assert result["failed"] is True and result["changed"] is True
    assert result["msg"] == "not running 5 s after its start: demo-worker-green@2.service demo-sessions-green.timer"
    assert result["stopped"] == ["demo-beat-blue@1.service"]
    assert "demo-worker-green@2.service" in result["started"]
    restored = colour.run(host, params("restore", tmp_path, colour="green", extra=items, restart=result["stopped"]))
    assert "demo-beat-blue@1.service" in host.active
    assert not {unit for unit in host.active if "-green" in unit}
    assert restored["journal"] == "Dec 06 21:23:43 app1 demo[1]: the journal"


def test_start_in_check_mode_starts_and_stops_nothing(tmp_path):
    host = FakeSystemd(tmp_path, check=True, active={"demo-beat-blue@1.service"})
    result = colour.run(host, params("start", tmp_path, colour="green", previous="blue", extra=extra(colour_name="")))
    assert result["changed"] is True and host.changing_calls() == [] and host.slept == 0
    assert result["msg"].startswith(
        "would be stopped on the previous colour: demo-beat-blue@1.service\nwould be started: "
    )


def test_stop_one_host_stops_either_colours_one_host_units_only(tmp_path):
    host = FakeSystemd(
        tmp_path,
        active={"demo-beat-blue@1.service", "demo-worker-blue@1.service"},
        enabled={"demo-beat-green@1.service"},
    )
    result = colour.run(host, params("stop_one_host", tmp_path, extra=extra(colour_name="")))
    assert result["stopped"] == ["demo-beat-blue@1.service", "demo-beat-green@1.service"] and result["changed"]
    assert host.active == {"demo-worker-blue@1.service"}


# restore


def test_restore_gives_the_colour_back_its_files_and_forgets_what_it_did_not_have(tmp_path):
    items = extra(colour_name="green")
    unit_dir = unit_dir_with(tmp_path, files=["demo-worker-green@.service", "demo-sessions-green.timer"])
    dropin, record = tmp_path / "instance.conf", tmp_path / "green.json"
    dropin.write_text("new\n")
    record.write_text("new record\n")
    for check in (True, False):
        host = FakeSystemd(unit_dir, check=check, active={"demo@green.service", "demo-worker-green@1.service"})
        result = colour.run(
            host,
            params(
                "restore",
                unit_dir,
                colour="green",
                extra=items,
                restart=["demo-beat-blue@1.service"],
                files={str(dropin): "old\n", str(record): None},
            ),
        )
        assert result["changed"] is True
        assert result["stopped"] == ["demo@green.service", "demo-worker-green@1.service"]
        assert str(record) in result["removed"] and str(unit_dir / "demo-worker-green@.service") in result["removed"]
        assert dropin.read_text() == ("new\n" if check else "old\n")
        assert record.exists() is check
    assert (
        not (unit_dir / "demo-worker-green@.service").exists() and not (unit_dir / "demo-sessions-green.timer").exists()
    )
    assert oct(dropin.stat().st_mode & 0o777) == "0o644"
    assert host.active == {"demo-beat-blue@1.service"} and ["systemctl", "daemon-reload"] in host.calls


def test_restore_of_a_colour_that_did_not_switch_only_reads_the_journal(tmp_path):
    host = FakeSystemd(tmp_path, active={"demo@blue.service"})
    result = colour.run(host, params("restore", tmp_path, colour="blue", switching=False))
    assert result["changed"] is False and host.changing_calls() == [] and host.active == {"demo@blue.service"}
    (journal,) = [call for call in host.calls if call[0] == "journalctl"]
    assert journal == ["journalctl", "--no-pager", "--lines", "40", "--unit=demo@blue.service"]


def test_an_action_without_what_it_needs_fails_naming_it(tmp_path):
    result = colour.run(FakeSystemd(tmp_path), params("retire", tmp_path))
    assert result["failed"] is True and result["msg"] == "action=retire requires colour, release_dir"


# As Ansible runs it: a fake systemctl on PATH, in check mode.


def test_the_module_run_as_ansible_runs_it_changes_nothing_in_check_mode(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    fake = bin_dir / "systemctl"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >>{log}\n'
        'case "$1" in\n'
        '  list-units) echo "demo@blue.service loaded active running x" ;;\n'
        "  is-enabled) exit 1 ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    unit_dir = unit_dir_with(tmp_path, files=["demo-worker-blue@.service"])
    arguments = {
        "action": "retire",
        "app": "demo",
        "colour": "green",
        "previous": "blue",
        "release_dir": "/srv/r2",
        "unit_dir": str(unit_dir),
        "_ansible_check_mode": True,
        "_ansible_diff": True,
    }
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": arguments}))
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    answer = subprocess.run(  # noqa: S603  (this interpreter and the module's own file)
        [sys.executable, str(PLUGINS / "modules" / "rollout_colour.py"), str(args_file)],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    result = json.loads(answer.stdout)
    assert result["changed"] is True and result["stopped"] == ["demo@blue.service"], result
    assert result["removed"] == ["demo-worker-blue@.service"] and result["enabled"] == ["demo@green.service"]
    assert "diff" in result
    assert (unit_dir / "demo-worker-blue@.service").exists()
    called = log.read_text().splitlines()
    assert [line for line in called if line.split()[0] in {"disable", "enable", "stop", "start", "daemon-reload"}] == []


def test_read_says_which_of_the_colours_units_run_and_start_at_boot(tmp_path):
    items = extra(colour_name="")
    host = FakeSystemd(
        tmp_path, active={"demo@blue.service", "demo-sessions-blue.timer"}, enabled={"demo@blue.service"}
    )
    result = colour.run(host, params("read", tmp_path, colour="blue", processes=2, extra=items))
    assert result["changed"] is False and host.changing_calls() == []
    assert result["units"] == names.web_units("demo", "blue", 2) + names.all_extra_units("demo", items, "blue")
    assert result["active"] == ["demo@blue.service", "demo-sessions-blue.timer"]
    assert result["enabled"] == ["demo@blue.service"]
