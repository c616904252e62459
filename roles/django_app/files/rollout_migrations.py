# Copyright: django_asgi.rollout maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Apply a release's migrations in the phases the serving release can live beside.

Run by the django_app role's migrate entry point, on an app host, as the app
user, with the release's venv and settings (the same transient unit as any
management command)::

    python rollout_migrations.py before --mode refuse|two_phase|one_phase [--serving]
        [--safe APP.MIGRATION ...] [--after-switch APP.MIGRATION ...]
        [--lock-timeout SECONDS] [--lock-retries N]
    python rollout_migrations.py after [--lock-timeout SECONDS] [--lock-retries N]

``before`` reads the pending migrations from Django's own loader and executor
(the plan ``migrate`` would apply), classifies each operation against the
schema state before it, and applies what the serving release survives. With
``--serving`` (a previous release serves while the hosts switch) an operation
it would not survive is refused, or, with ``two_phase``, left for ``after``,
which applies the rest once every app host serves the new release. On
PostgreSQL every statement runs with ``lock_timeout``, so a migration never
queues the site's queries behind it for longer; one that cannot get its lock
is tried again a bounded number of times, then fails naming its tables.

Prints one JSON object on stdout (Django's own output goes to stderr) and
exits 0, or 2 when it refuses or fails, with ``error`` saying why in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

# What an operation does to the schema the serving release runs on:
SAFE = "safe"  # it keeps working (additive)
AFTER = "after"  # it breaks, but the new release works without it: it can wait until no host serves the old one
NEVER = "never"  # the new release needs it and the serving release breaks on it: neither phase works
UNKNOWN = "unknown"  # code or SQL: only the operator knows

LOCK_NOT_AVAILABLE = "55P03"
RETRY_PAUSE = 2.0


@dataclass
class Finding:
    operation: str
    target: str  # app.Model or app.Model.field
    verdict: str
    why: str


@dataclass
class Planned:
    migration: str  # app.name
    phase: str = "before_switch"  # or after_switch
    findings: list[Finding] = field(default_factory=list)
    marked: str = ""  # who placed it: the inventory or the project's own marker

    def unsafe(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.verdict != SAFE]


class Refused(Exception):
    """The release cannot roll with these migrations as asked; the message says the way forward."""


def _label(migration: Any) -> str:
    return f"{migration.app_label}.{migration.name}"


def _model_field(state: Any, app_label: str, model_name: str, name: str) -> Any:
    model = state.models.get((app_label, model_name.lower()))
    return None if model is None else model.fields.get(name)


def _column(state: Any, app_label: str, model_name: str, name: str) -> str:
    old = _model_field(state, app_label, model_name, name)
    return (getattr(old, "db_column", None) or name) if old is not None else name


def _has_db_default(new: Any) -> bool:
    from django.db.models import NOT_PROVIDED

    return getattr(new, "db_default", NOT_PROVIDED) is not NOT_PROVIDED


def _field_change(old: Any, new: Any) -> tuple[str, str]:
    """How an AlterField changes the column for the serving release."""
    if old is None:
        return UNKNOWN, "alters a field the migration state does not hold"
    if type(old) is not type(new) or getattr(old, "db_column", None) != getattr(new, "db_column", None):
        return NEVER, "changes the column's type or name, which the serving release reads as it was"
    if getattr(old, "remote_field", None) is not None and old.deconstruct()[3].get("to") != new.deconstruct()[3].get(
        "to"
    ):
        return NEVER, "points the column at another table"
    for limit in ("max_length", "max_digits", "decimal_places"):
        before, after = getattr(old, limit, None), getattr(new, limit, None)
        if before is not None and after is not None and after < before:
            return NEVER, f"lowers {limit} from {before} to {after}, which the serving release's values may exceed"
    if old.null and not new.null and not _has_db_default(new):
        return AFTER, "adds NOT NULL, which the serving release's writes may leave empty"
    if getattr(old, "unique", False) is False and getattr(new, "unique", False):
        return AFTER, "adds a unique constraint the serving release's writes may break"
    return SAFE, "keeps the column compatible"


def classify(operation: Any, app_label: str, state: Any) -> list[Finding]:
    """The findings of one operation, against the state before it."""
    from django.db import migrations as ops

    name = type(operation).__name__
    model = getattr(operation, "model_name", None) or getattr(operation, "name", "")
    target = f"{app_label}.{model}"
    if isinstance(operation, ops.SeparateDatabaseAndState):
        return [finding for inner in operation.database_operations for finding in classify(inner, app_label, state)]
    if isinstance(operation, ops.RunPython | ops.RunSQL):
        return [Finding(name, app_label, UNKNOWN, "runs code or SQL the analysis cannot read")]
    if isinstance(operation, ops.CreateModel):
        return [Finding(name, target, SAFE, "creates a table")]
    if isinstance(operation, ops.DeleteModel):
        return [Finding(name, target, AFTER, "drops a table the serving release may still use")]
    if isinstance(operation, ops.RenameModel | ops.AlterModelTable):
        return [Finding(name, target, NEVER, "renames a table the serving release uses")]
    if isinstance(operation, ops.AddField):
        field_target = f"{target}.{operation.name}"
        new = operation.field
        if new.many_to_many or new.null or _has_db_default(new) or getattr(new, "generated", False):
            return [Finding(name, field_target, SAFE, "adds a column the serving release can leave empty")]
        return [
            Finding(
                name,
                field_target,
                NEVER,
                "adds a NOT NULL column with no database default, which the serving release's inserts leave empty "
                "(give it db_default or null=True)",
            )
        ]
    if isinstance(operation, ops.RemoveField):
        why = "drops a column the serving release reads or writes"
        return [Finding(name, f"{target}.{operation.name}", AFTER, why)]
    if isinstance(operation, ops.RenameField):
        field_target = f"{target}.{operation.old_name}"
        if _column(state, app_label, model, operation.old_name) != operation.old_name:
            return [Finding(name, field_target, SAFE, "renames the field, not its column (db_column)")]
        why = f"renames a column to {operation.new_name} under the serving release"
        return [Finding(name, field_target, NEVER, why)]
    if isinstance(operation, ops.AlterField):
        verdict, why = _field_change(_model_field(state, app_label, model, operation.name), operation.field)
        return [Finding(name, f"{target}.{operation.name}", verdict, why)]
    if isinstance(operation, ops.AddConstraint):
        return [Finding(name, target, AFTER, "adds a constraint the serving release's writes may break")]
    if isinstance(operation, ops.AlterUniqueTogether):
        before = state.models.get((app_label, model.lower()))
        old = set(before.options.get("unique_together", ())) if before is not None else set()
        if set(operation.option_value or ()) - old:
            return [Finding(name, target, AFTER, "adds a unique constraint the serving release's writes may break")]
        return [Finding(name, target, SAFE, "drops a unique constraint")]
    if isinstance(operation, ops.AlterOrderWithRespectTo):
        return [Finding(name, target, NEVER, "adds or drops the _order column the serving release uses")]
    if isinstance(
        operation,
        ops.AddIndex
        | ops.RemoveIndex
        | ops.RenameIndex
        | ops.RemoveConstraint
        | ops.AlterIndexTogether
        | ops.AlterModelOptions
        | ops.AlterModelManagers
        | ops.AlterModelTableComment,
    ):
        return [Finding(name, target, SAFE, "changes no column the serving release reads or writes")]
    module = type(operation).__module__
    if module.startswith("django.contrib.postgres"):
        # CREATE EXTENSION, collations, indexes built or dropped CONCURRENTLY.
        return [Finding(name, target, SAFE, "changes no column the serving release reads or writes")]
    return [Finding(name, target, UNKNOWN, f"is an operation the analysis does not know ({module})")]


def _marker(migration: Any) -> str:
    """What the project says of a migration with django-safemigrate or django-syzygy, read without either."""
    for attribute in ("safe", "stage"):
        value = getattr(migration, attribute, None)
        value = getattr(value, "value", value)
        if isinstance(value, str):
            if value in ("before_deploy", "always", "pre_deploy"):
                return "before_switch"
            if value in ("after_deploy", "post_deploy"):
                return "after_switch"
    return ""


def plan(executor: Any, mode: str, serving: bool, safe: set[str], after: set[str]) -> list[Planned]:
    """The pending migrations, in the order migrate applies them, each with its findings and phase."""
    graph = executor.loader.graph
    pending = [migration for migration, backwards in executor.migration_plan(graph.leaf_nodes()) if not backwards]
    state = executor._create_project_state(with_applied_migrations=True)
    planned: list[Planned] = []
    for migration in pending:
        entry = Planned(_label(migration))
        for operation in migration.operations:
            entry.findings.extend(classify(operation, migration.app_label, state))
            operation.state_forwards(migration.app_label, state)
        if entry.migration in safe:
            entry.marked = "django_app_migrations_safe"
        elif entry.migration in after:
            entry.phase, entry.marked = "after_switch", "django_app_migrations_after_switch"
        elif _marker(migration):
            entry.phase, entry.marked = _marker(migration), "the migration's own marker"
        elif serving and entry.unsafe() and mode == "two_phase":
            entry.phase = "after_switch"
        planned.append(entry)
    if not serving or mode == "one_phase":
        for entry in planned:
            entry.phase = "before_switch"
        return planned
    _refuse_what_cannot_roll(executor, planned, pending, mode)
    return planned


def _refuse_what_cannot_roll(executor: Any, planned: list[Planned], pending: list[Any], mode: str) -> None:
    by_label = {entry.migration: entry for entry in planned}
    for entry in planned:
        if entry.marked:
            continue
        never = [finding for finding in entry.unsafe() if finding.verdict == NEVER]
        if never:
            raise Refused(
                f"migration {entry.migration} cannot run beside the serving release in either phase: "
                f"{_describe(never[0])}. Roll it with the site in maintenance (-e rollout_maintenance=true), "
                f"split it across releases (add the new, copy, remove the old in a later release), or list "
                f"{entry.migration} in django_app_migrations_safe if the serving release does not use it"
            )
        if entry.phase == "before_switch" and entry.unsafe() and mode == "refuse":
            raise Refused(
                f"migration {entry.migration} would break the serving release during the rollout: "
                f"{_describe(entry.unsafe()[0])}. Run it after every app host serves the new release "
                f"(-e rollout_migrations=two_phase, or list {entry.migration} in django_app_migrations_after_switch), "
                f"or roll it with the site in maintenance (-e rollout_maintenance=true); if the serving release does "
                f"not use what it changes, list it in django_app_migrations_safe"
            )
    # migrate APP MIGRATION applies every ancestor first: a migration before the
    # switch cannot depend on one left for after it.
    graph = executor.loader.graph
    for migration in pending:
        entry = by_label[_label(migration)]
        if entry.phase != "before_switch":
            continue
        for app_label, name in graph.forwards_plan((migration.app_label, migration.name)):
            ancestor = by_label.get(f"{app_label}.{name}")
            if ancestor is not None and ancestor.phase == "after_switch":
                why = _describe(ancestor.unsafe()[0]) if ancestor.unsafe() else f"placed there by {ancestor.marked}"
                raise Refused(
                    f"migration {entry.migration} must run before the switch (the new release needs it), but it "
                    f"depends on {ancestor.migration}, which must wait until after it ({why}). Move "
                    f"{ancestor.migration} to a later release, or roll this one with the site in maintenance "
                    f"(-e rollout_maintenance=true)"
                )


def _describe(finding: Finding) -> str:
    return f"{finding.operation} {finding.target} {finding.why}"


def _relax_dropped_columns(executor: Any, planned: list[Planned]) -> list[str]:
    """Columns dropped after the switch become nullable before it: the new release no longer writes them."""
    from django.db import connection
    from django.db.migrations.operations import RemoveField

    relaxed: list[str] = []
    for entry in planned:
        if entry.phase != "after_switch":
            continue
        app_label, name = entry.migration.split(".", 1)
        migration = executor.loader.graph.nodes[(app_label, name)]
        removals = [operation for operation in migration.operations if isinstance(operation, RemoveField)]
        if not removals:
            continue
        apps = executor.loader.project_state((app_label, name), at_end=False).apps
        for operation in removals:
            model = apps.get_model(app_label, operation.model_name)
            old = model._meta.get_field(operation.name)
            if old.null or old.many_to_many or _has_db_default(old):
                continue
            new = old.clone()
            new.null = True
            new.set_attributes_from_name(operation.name)
            new.model = model
            with connection.schema_editor() as editor:
                editor.alter_field(model, old, new)
            relaxed.append(f"{model._meta.db_table}.{old.column}")
    return relaxed


def _tables(executor: Any, label: str) -> list[str]:
    app_label, name = label.split(".", 1)
    migration = executor.loader.graph.nodes[(app_label, name)]
    state = executor.loader.project_state((app_label, name), at_end=True)
    tables = []
    for operation in migration.operations:
        model_name = getattr(operation, "model_name", None) or getattr(operation, "name", None)
        model = state.models.get((app_label, str(model_name).lower())) if model_name else None
        if model is not None:
            tables.append(model.options.get("db_table") or f"{app_label}_{model.name_lower}")
    return sorted(set(tables))


def _is_lock_timeout(error: BaseException) -> bool:
    while error is not None:
        if LOCK_NOT_AVAILABLE in (getattr(error, "sqlstate", None), getattr(error, "pgcode", None)):
            return True
        error = error.__cause__ or error.__context__
    return False


def _limit_lock_waits(seconds: int) -> None:
    """Every statement of this process waits at most this long for a lock (PostgreSQL only)."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    def limit(sender: Any, connection: Any, **_kwargs: Any) -> None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = %s", [f"{seconds}s"])

    connection_created.connect(limit, weak=False)
    for connection in connections.all():
        if connection.connection is not None:
            limit(None, connection)


class Applier:
    """Django's own migrate command, run to targets, noting how long each migration took.

    On PostgreSQL a statement that waits longer than the lock timeout fails;
    the migration it belongs to rolls back whole, and is tried again, a bounded
    number of times, before the run stops naming its tables.
    """

    def __init__(self, executor: Any, timeout: int, retries: int, applied: list[dict[str, Any]]) -> None:
        from django.core.management.commands.migrate import Command

        self.executor, self.timeout, self.retries, self.applied = executor, timeout, retries, applied
        self.current = ""
        self.started = 0.0
        outer = self

        class Timed(Command):
            def migration_progress_callback(self, action: str, migration: Any = None, fake: bool = False) -> None:
                if action == "apply_start":
                    outer.current, outer.started = _label(migration), time.monotonic()
                elif action == "apply_success":
                    seconds = round(time.monotonic() - outer.started, 3)
                    outer.applied.append({"migration": _label(migration), "seconds": seconds})
                super().migration_progress_callback(action, migration, fake)

        self.command = Timed

    def migrate(self, *target: str) -> None:
        from django.core.management import call_command

        self.retrying(lambda: call_command(self.command(), *target, interactive=False, verbosity=1))

    def retrying(self, step: Any) -> None:
        for attempt in range(self.retries + 1):
            try:
                step()
                return
            except Exception as error:
                if not _is_lock_timeout(error):
                    raise
                if attempt == self.retries:
                    tables = ", ".join(_tables(self.executor, self.current)) or "its tables"
                    raise Refused(
                        f"{self.current} could not lock {tables} within {self.timeout} s, {self.retries + 1} times: "
                        f"another transaction holds the lock. Nothing of {self.current} was applied; find the "
                        f"holder in pg_stat_activity, or raise django_app_migrate_lock_timeout"
                    ) from error
                time.sleep(RETRY_PAUSE)


def _targets_before(planned: list[Planned]) -> list[tuple[str, str]]:
    """migrate's APP MIGRATION targets for the migrations before the switch: the last one of each app."""
    last: dict[str, str] = {}
    for entry in planned:
        if entry.phase == "before_switch":
            app_label, name = entry.migration.split(".", 1)
            last[app_label] = name
    return list(last.items())


def cause(error: BaseException) -> str:
    """The exception's last line, and the project's file and line it came from (not Django's, not the venv's)."""
    frames = traceback.extract_tb(error.__traceback__)
    outside = ("site-packages", "/lib/python3")
    project = [
        frame
        for frame in frames
        if not frame.filename.startswith("<")
        and frame.filename != __file__
        and not any(part in frame.filename for part in outside)
    ]
    where = ""
    if project:
        filename = project[-1].filename
        root = os.getcwd() + os.sep
        where = f"{filename.removeprefix(root)}:{project[-1].lineno}: "
    text = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()
    return f"{where}{text[-1] if text else type(error).__name__}"


def run(arguments: argparse.Namespace, result: dict[str, Any]) -> None:
    import django

    django.setup()
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    _limit_lock_waits(arguments.lock_timeout)
    executor = MigrationExecutor(connection)
    conflicts = executor.loader.detect_conflicts()
    if conflicts:
        names = "; ".join(f"{app}: {', '.join(sorted(found))}" for app, found in sorted(conflicts.items()))
        raise Refused(f"conflicting migrations, each a leaf of its app ({names}): add a merge migration")
    applier = Applier(executor, arguments.lock_timeout, arguments.lock_retries, result["applied"])
    if arguments.phase == "after":
        applier.migrate()
        if arguments.record:
            # What ran once no host served the previous release: a rollback to it warns.
            record = {"release": arguments.release, "migrations": [entry["migration"] for entry in result["applied"]]}
            with open(arguments.record, "w", encoding="utf-8") as stream:
                json.dump(record, stream)
        return
    if arguments.record:
        # A new rollout: the schema now follows its release, whatever an earlier one left for after its switch.
        with contextlib.suppress(FileNotFoundError):
            os.remove(arguments.record)
    planned = plan(executor, arguments.mode, arguments.serving, set(arguments.safe), set(arguments.after_switch))
    result["plan"] = [asdict(entry) for entry in planned]
    result["after_switch"] = [entry.migration for entry in planned if entry.phase == "after_switch"]
    if not result["after_switch"]:
        applier.migrate()
        return
    for target in _targets_before(planned):
        applier.migrate(*target)
    applier.current = "making the columns dropped after the switch nullable"
    applier.retrying(lambda: result["relaxed"].extend(_relax_dropped_columns(MigrationExecutor(connection), planned)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("phase", choices=["before", "after"])
    parser.add_argument("--mode", choices=["refuse", "two_phase", "one_phase"], default="refuse")
    parser.add_argument("--serving", action="store_true", help="a previous release serves during the rollout")
    parser.add_argument("--safe", nargs="*", default=[])
    parser.add_argument("--after-switch", nargs="*", default=[])
    parser.add_argument("--lock-timeout", type=int, default=5)
    parser.add_argument("--lock-retries", type=int, default=3)
    parser.add_argument("--record", default="", help="where the second phase records what it applied")
    parser.add_argument("--release", default="", help="the release these migrations belong to")
    arguments = parser.parse_args()
    stdout = sys.stdout
    result: dict[str, Any] = {"phase": arguments.phase, "applied": [], "relaxed": [], "after_switch": [], "error": None}
    code = 0
    with contextlib.redirect_stdout(sys.stderr):
        try:
            run(arguments, result)
        except Refused as refused:
            result["error"], code = str(refused), 2
        except Exception as error:
            traceback.print_exc()
            result["error"], code = f"migrate failed: {cause(error)}", 2
    stdout.write(json.dumps(result) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
