"""docs/release-path.md stays true: every file a release passes through in site.yml and rollback.yml is drawn."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
DOC = (ROOT / "docs" / "release-path.md").read_text()


def steps(path: Path, seen: set[Path]) -> set[str]:
    """The files the playbook at path imports or includes, and the roles' entry points, followed through."""
    if path in seen:
        return set()
    seen.add(path)
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                action = key.rsplit(".", 1)[-1]
                if action in {"import_playbook", "include_tasks", "import_tasks"} and isinstance(value, str):
                    target = (path.parent / value).resolve()
                    found.add(str(target.relative_to(PLAYBOOKS)))
                    found.update(steps(target, seen))
                elif action == "include_role" and isinstance(value, dict):
                    role = value["name"].rsplit(".", 1)[-1]
                    found.add(f"{role}:{value.get('tasks_from', 'main')}")
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(path.read_text()))
    return found


def test_every_play_file_and_entry_point_of_a_release_is_in_the_picture():
    reached = steps(PLAYBOOKS / "site.yml", set()) | steps(PLAYBOOKS / "rollback.yml", set())
    assert "plays/check.yml" in reached and "tasks/switch.yml" in reached
    missing = []
    for step in sorted(reached):
        if ":" in step:
            role, entry = step.split(":")
            # The entry point's file, named beside its role.
            if not re.search(rf"{role}\b[^\n]*\b{entry}(\.yml)?\b", DOC):
                missing.append(step)
        elif step not in DOC:
            missing.append(step)
    assert not missing, f"docs/release-path.md does not draw {missing}"


def test_every_file_the_picture_names_exists():
    named = set(re.findall(r"\b((?:plays|tasks)/[a-z_]+\.yml)\b", DOC))
    assert named
    gone = sorted(
        name for name in named if not (PLAYBOOKS / name).exists() and not any((ROOT / "roles").glob(f"*/{name}"))
    )
    assert not gone, f"docs/release-path.md names files that do not exist: {gone}"
