"""The migrations runner (roles/django_app/files/rollout_migrations.py) on a real Django project and database.

Each test writes a small project whose app has a first migration already
applied and a second one pending, then runs the runner as the role does: a
separate process, the project on PYTHONPATH, one JSON object on stdout.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "roles" / "django_app" / "files" / "rollout_migrations.py"

SETTINGS = """
SECRET_KEY = "unit-test-only"
INSTALLED_APPS = ["shop"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB}}
USE_TZ = True
"""

INITIAL = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.AutoField(primary_key=True)),
                ("note", models.CharField(max_length=200)),
                ("size", models.IntegerField(null=True)),
            ],
        ),
    ]
"""

SECOND = {
    "additive": """
        migrations.AddField("item", "tag", models.CharField(max_length=20, null=True)),
        migrations.CreateModel(name="Box", fields=[("id", models.AutoField(primary_key=True))]),
        migrations.AddIndex("item", models.Index(fields=["size"], name="item_size")),
    """,
    "remove": 'migrations.RemoveField("item", "note"),',
    "rename": 'migrations.RenameField("item", "note", "text"),',
    "not_null": 'migrations.AlterField("item", "size", models.IntegerField(default=0)),',
    "add_not_null": 'migrations.AddField("item", "count", models.IntegerField(default=1), preserve_default=False),',
    "add_db_default": 'migrations.AddField("item", "count", models.IntegerField(db_default=1)),',
    "code": "migrations.RunPython(migrations.RunPython.noop),",
}


def project(tmp_path: Path, second: str, *, marker: str = "", third: str = "") -> Path:
    app = tmp_path / "shop"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "migrations" / "0001_initial.py").write_text(INITIAL)
    (tmp_path / "settings.py").write_text(f"DB = {str(tmp_path / 'db.sqlite3')!r}\n{SETTINGS}")
    body = textwrap.indent(textwrap.dedent(SECOND[second]).strip(), " " * 8)
    (app / "migrations" / "0002_change.py").write_text(
        "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n"
        f"    dependencies = [('shop', '0001_initial')]\n{marker}    operations = [\n{body}\n    ]\n"
    )
    if third:
        body = textwrap.indent(textwrap.dedent(SECOND[third]).strip(), " " * 8)
        (app / "migrations" / "0003_more.py").write_text(
            "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n"
            f"    dependencies = [('shop', '0002_change')]\n    operations = [\n{body}\n    ]\n"
        )
    django_admin(tmp_path, "migrate", "shop", "0001")
    return tmp_path


def django_admin(root: Path, *arguments: str) -> None:
    subprocess.run(  # noqa: S603  (this Python, on files the test wrote)
        [sys.executable, "-m", "django", *arguments],
        cwd=root,
        env={"PYTHONPATH": str(root), "DJANGO_SETTINGS_MODULE": "settings"},
        check=True,
        capture_output=True,
    )


def runner(root: Path, *arguments: str) -> tuple[int, dict]:
    done = subprocess.run(  # noqa: S603  (this Python, on files the test wrote)
        [sys.executable, str(RUNNER), *arguments],
        cwd=root,
        env={"PYTHONPATH": str(root), "DJANGO_SETTINGS_MODULE": "settings"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.count("\n") == 1, (done.stdout, done.stderr)
    return done.returncode, json.loads(done.stdout)


def columns(root: Path) -> dict[str, bool]:
    """Each column of the item table, and whether it takes NULL."""
    with sqlite3.connect(root / "db.sqlite3") as db:
        return {row[1]: not row[3] for row in db.execute("PRAGMA table_info(shop_item)")}


def applied(root: Path) -> list[str]:
    with sqlite3.connect(root / "db.sqlite3") as db:
        return [name for (name,) in db.execute("SELECT name FROM django_migrations WHERE app = 'shop' ORDER BY id")]


def test_an_additive_release_migrates_before_the_switch_with_each_migration_timed(tmp_path):
    root = project(tmp_path, "additive")
    code, result = runner(root, "before", "--serving")
    assert code == 0, result
    assert result["error"] is None and result["after_switch"] == []
    assert [entry["migration"] for entry in result["applied"]] == ["shop.0002_change"]
    assert result["applied"][0]["seconds"] >= 0
    (entry,) = result["plan"]
    assert {finding["verdict"] for finding in entry["findings"]} == {"safe"}
    assert columns(root)["tag"] is True


@pytest.mark.parametrize("second", ["remove", "not_null", "code"])
def test_a_migration_the_serving_release_would_break_on_is_refused_with_both_ways_forward(tmp_path, second):
    root = project(tmp_path, second)
    code, result = runner(root, "before", "--serving")
    assert code == 2
    assert "migration shop.0002_change would break the serving release" in result["error"]
    assert "-e rollout_migrations=two_phase" in result["error"]
    assert "django_app_migrations_safe" in result["error"]
    assert "-e rollout_maintenance=true" in result["error"]
    assert applied(root) == ["0001_initial"]


def test_the_refusal_names_the_operation_and_the_model_field(tmp_path):
    _code, result = runner(project(tmp_path, "remove"), "before", "--serving")
    assert "RemoveField shop.item.note drops a column the serving release reads or writes" in result["error"]


def test_nothing_serving_yet_applies_everything(tmp_path):
    root = project(tmp_path, "remove")
    code, result = runner(root, "before")
    assert code == 0, result
    assert "note" not in columns(root)


def test_two_phases_drop_the_column_after_the_switch_and_make_it_nullable_before(tmp_path):
    root = project(tmp_path, "remove", third="additive")
    code, result = runner(root, "before", "--serving", "--mode", "two_phase")
    # 0003 is safe but depends on 0002, which must wait: it cannot run before the switch.
    assert code == 2 and "shop.0003_more must run before the switch" in result["error"], result
    root = project(tmp_path / "two", "remove")
    code, result = runner(root, "before", "--serving", "--mode", "two_phase")
    assert code == 0, result
    assert result["after_switch"] == ["shop.0002_change"]
    assert result["applied"] == []
    assert result["relaxed"] == ["shop_item.note"]
    # The new release inserts without the column while the old one still reads it.
    assert columns(root)["note"] is True
    record = root / "after-switch.json"
    code, result = runner(root, "after", "--record", str(record), "--release", "v2")
    assert code == 0, result
    assert [entry["migration"] for entry in result["applied"]] == ["shop.0002_change"]
    assert "note" not in columns(root)
    # A rollback to an older release reads what ran after the switch; the next rollout clears it.
    assert json.loads(record.read_text()) == {"release": "v2", "migrations": ["shop.0002_change"]}
    runner(root, "before", "--record", str(record), "--release", "v3")
    assert not record.exists()


def test_a_rename_is_refused_in_either_phase_and_maintenance_is_offered(tmp_path):
    code, result = runner(project(tmp_path, "rename"), "before", "--serving", "--mode", "two_phase")
    assert code == 2
    assert "cannot run beside the serving release in either phase" in result["error"]
    assert "-e rollout_maintenance=true" in result["error"]


@pytest.mark.parametrize(("second", "verdict"), [("add_not_null", "never"), ("add_db_default", "safe")])
def test_a_not_null_column_needs_a_database_default(tmp_path, second, verdict):
    code, result = runner(project(tmp_path, second), "before", "--serving", "--mode", "one_phase")
    assert code == 0, result
    assert [finding["verdict"] for finding in result["plan"][0]["findings"]] == [verdict]


def test_the_operator_or_the_project_places_a_migration(tmp_path):
    root = project(tmp_path, "code")
    code, result = runner(root, "before", "--serving", "--safe", "shop.0002_change")
    assert code == 0 and applied(root) == ["0001_initial", "0002_change"], result
    root = project(tmp_path / "after", "remove")
    code, result = runner(root, "before", "--serving", "--after-switch", "shop.0002_change")
    assert code == 0 and result["after_switch"] == ["shop.0002_change"], result
    # django-safemigrate's marker, read without the package.
    marker = "    safe = 'after_deploy'\n"
    root = project(tmp_path / "marked", "remove", marker=marker)
    code, result = runner(root, "before", "--serving")
    assert code == 0 and result["after_switch"] == ["shop.0002_change"], result


def test_settings_that_raise_are_named_by_file_line_and_exception(tmp_path):
    root = project(tmp_path, "additive")
    settings = root / "settings.py"
    settings.write_text(settings.read_text() + 'import os\nSECRET = os.environ["MISSING_SECRET"]\n')
    code, result = runner(root, "before")
    assert code == 2
    assert result["error"] == "migrate failed: settings.py:8: KeyError: 'MISSING_SECRET'"
