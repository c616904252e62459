"""The rollout_read module, run as Ansible runs it (a JSON file of arguments)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "rollout_read.py"


def run(tmp_path: Path, files: dict, check: bool = False) -> dict:
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"files": files, "_ansible_check_mode": check}}))
    answer = subprocess.run(  # noqa: S603  (this interpreter and the module's own file)
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False
    )
    return json.loads(answer.stdout)


def test_it_reads_each_file_and_null_for_a_missing_one_even_in_check_mode(tmp_path):
    (tmp_path / "colour").write_text("blue\n")
    (tmp_path / "blue.json").write_text('{"release": {"id": "r1"}}\n')
    for check in (False, True):
        answer = run(
            tmp_path,
            {"serving": str(tmp_path / "colour"), "blue": str(tmp_path / "blue.json"), "green": str(tmp_path / "no")},
            check=check,
        )
        assert answer["changed"] is False, answer
        assert answer["contents"] == {"serving": "blue\n", "blue": '{"release": {"id": "r1"}}\n', "green": None}


def test_a_relative_path_or_a_directory_fails_naming_it(tmp_path):
    relative = run(tmp_path, {"serving": "var/lib/colour"})
    assert relative.get("failed") is True and "serving (var/lib/colour)" in relative["msg"], relative
    directory = run(tmp_path, {"state": str(tmp_path)})
    assert directory.get("failed") is True and f"state ({tmp_path})" in directory["msg"], directory
