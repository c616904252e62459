"""The rollout_files module, run as Ansible runs it (a JSON file of arguments), against a temporary tree."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "rollout_files.py"
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run(
    tmp_path: Path, paths: list[dict], check: bool = False, diff: bool = False, validate: list[str] | None = None
) -> dict:
    arguments = {"paths": [{"owner": OWNER, "group": GROUP, **item} for item in paths], "validate": validate}
    arguments["_ansible_check_mode"] = check
    arguments["_ansible_diff"] = diff
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": arguments}))
    answer = subprocess.run(  # noqa: S603  (this interpreter and the module's own file)
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False
    )
    return json.loads(answer.stdout)


def tree(root: Path) -> list[dict]:
    return [
        {"path": str(root / "state"), "state": "directory", "mode": "0750"},
        {"path": str(root / "state" / "colour"), "state": "file", "content": "blue\n", "mode": "0640"},
        {"path": str(root / "blue-2.d"), "state": "link", "src": str(root / "blue.d")},
        {"path": str(root / "old"), "state": "absent"},
    ]


def test_it_makes_the_tree_then_changes_nothing(tmp_path):
    root = tmp_path / "host"
    (root / "old" / "inside").mkdir(parents=True)
    first = run(tmp_path, tree(root))
    assert first["changed"] is True, first
    assert first["changed_paths"] == [str(root / name) for name in ("state", "state/colour", "blue-2.d", "old")]
    assert stat.S_IMODE((root / "state").stat().st_mode) == 0o750
    assert (root / "state" / "colour").read_text() == "blue\n"
    assert stat.S_IMODE((root / "state" / "colour").stat().st_mode) == 0o640
    assert os.readlink(root / "blue-2.d") == str(root / "blue.d")
    assert not (root / "old").exists()
    second = run(tmp_path, tree(root))
    assert second["changed"] is False, second
    assert second["changed_paths"] == []


def test_check_mode_says_what_would_change_and_writes_nothing(tmp_path):
    root = tmp_path / "host"
    run(tmp_path, tree(root))
    wanted = tree(root)
    wanted[1]["content"] = "green\n"
    answer = run(tmp_path, wanted, check=True, diff=True)
    assert answer["changed"] is True
    assert answer["changed_paths"] == [str(root / "state" / "colour")]
    colour = str(root / "state" / "colour")
    assert answer["diff"] == [{"before_header": colour, "after_header": colour, "before": "blue\n", "after": "green\n"}]
    assert (root / "state" / "colour").read_text() == "blue\n"
    # A whole tree that is not there yet, in check mode: nothing created.
    fresh = tmp_path / "fresh"
    assert run(tmp_path, tree(fresh), check=True)["changed"] is True
    assert not fresh.exists()


def test_a_mode_alone_is_a_change_and_a_link_replaces_a_directory(tmp_path):
    root = tmp_path / "host"
    run(tmp_path, tree(root))
    (root / "state" / "colour").chmod(0o644)
    (root / "blue-2.d").unlink()
    (root / "blue-2.d").mkdir()
    answer = run(tmp_path, tree(root))
    assert answer["changed_paths"] == [str(root / "state" / "colour"), str(root / "blue-2.d")]
    assert stat.S_IMODE((root / "state" / "colour").stat().st_mode) == 0o640
    assert os.readlink(root / "blue-2.d") == str(root / "blue.d")


def test_a_file_without_its_mode_is_refused(tmp_path):
    answer = run(tmp_path, [{"path": str(tmp_path / "f"), "state": "file", "content": "x"}])
    assert answer["failed"] is True
    assert "mode" in answer["msg"]
    assert not (tmp_path / "f").exists()


def test_a_result_the_validate_command_refuses_is_put_back_as_it_was(tmp_path):
    root = tmp_path / "host"
    run(tmp_path, tree(root))
    site, link = root / "state" / "site.conf", root / "state" / "site-enabled"
    good = [
        *tree(root),
        {"path": str(site), "state": "file", "content": "good\n", "mode": "0600"},
        {"path": str(link), "state": "link", "src": str(site)},
    ]
    accepted = run(tmp_path, good, validate=["grep", "-q", "good", str(link)])
    assert accepted["changed_paths"] == [str(site), str(link)], accepted
    # The command fails on the new content: the site gets its content and mode back, the new file goes.
    bad = [*good, {"path": str(root / "state" / "extra.conf"), "state": "file", "content": "x\n", "mode": "0644"}]
    bad[4] = {**bad[4], "content": "bad\n", "mode": "0644"}
    bad[1] = {**bad[1], "content": "green\n"}
    refused = run(tmp_path, bad, validate=["grep", "-q", "good", str(link)])
    assert refused.get("failed") is True, refused
    assert "grep -q good" in refused["msg"] and "put back" in refused["msg"], refused
    assert site.read_text() == "good\n"
    assert stat.S_IMODE(site.stat().st_mode) == 0o600
    assert (root / "state" / "colour").read_text() == "blue\n"
    assert not (root / "state" / "extra.conf").exists()
    assert os.readlink(link) == str(site)
    # Check mode runs no command.
    assert run(tmp_path, bad, check=True, validate=["false"])["changed"] is True
