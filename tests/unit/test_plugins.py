"""The collection's own Jinja plugins, as the playbooks call them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def load(relative: str):
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_"), PLUGINS / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


network = load("test/network.py")
host_names = load("test/host_name.py")
specs = load("filter/specs.py")
command_lines = load("test/command_line.py")
processes = load("filter/processes.py")
command_failure = load("filter/command_failure.py")


@pytest.mark.parametrize("value", ["10.0.0.5", "10.0.0.0/24", "::1", "2001:db8::/32", "172.18.0.2/32"])
def test_ip_network_accepts_addresses_and_cidrs(value):
    assert network.ip_network(value)


@pytest.mark.parametrize("value", ["", "10.0.0.5/24", "10.0.0.256", "lb.example", "*", None, 10, "10.0.0.0/33"])
def test_ip_network_refuses_everything_else(value):
    assert not network.ip_network(value)


@pytest.mark.parametrize(
    "value", ["app.example.com", "localhost", "*.example.com", ".example.com", "example.com.", "10.0.0.5", "::1"]
)
def test_host_name_accepts_names_wildcards_and_addresses(value):
    assert host_names.host_name(value)


@pytest.mark.parametrize(
    "value", ["", "*", "a b", "app.example.com;", "evil{", "-app.example", "app..example", "x" * 254, None, 3]
)
def test_host_name_refuses_what_would_break_a_server_name(value):
    assert not host_names.host_name(value)


@pytest.mark.parametrize("value", [["celery", "-A", "proj", "worker"], ["clearsessions"], ["/usr/bin/env", "x", 2]])
def test_command_line_accepts_a_list_of_one_line_arguments(value):
    assert command_lines.command_line(value)


@pytest.mark.parametrize("value", ["celery worker", [], ["celery", ""], ["a\nb"], ["-A", "x"], None, [None], {"a": 1}])
def test_command_line_refuses_a_string_an_empty_argument_or_a_line_break(value):
    assert not command_lines.command_line(value)


def test_release_processes_names_each_colours_units_and_keeps_one_host_items_to_that_host():
    listed = [
        {"name": "worker", "command": ["celery", "worker"], "count": 2},
        {"name": "beat", "command": ["celery", "beat"], "hosts": "one", "stop_timeout": 5},
    ]
    timers = [{"name": "sessions", "command": ["clearsessions"], "schedule": "daily"}]
    here = processes.release_processes(listed, timers, app="demo", colour="blue", one_host=True, stop_timeout=30)
    assert [item["units"] for item in here] == [
        ["demo-worker-blue@1.service", "demo-worker-blue@2.service"],
        ["demo-beat-blue@1.service"],
        ["demo-sessions-blue.timer"],
    ]
    assert [item["stop_timeout"] for item in here] == [30, 5, 30]
    assert here[2]["unit_file"] == "demo-sessions-blue.service"
    elsewhere = processes.release_processes(listed, timers, app="demo", colour="green", one_host=False, stop_timeout=30)
    assert [item["name"] for item in elsewhere] == ["worker", "sessions"]
    assert elsewhere[0]["unit_file"] == "demo-worker-green@.service"


def test_preflight_spec_drops_wired_options_and_every_default():
    options = {
        "django_app_name": {"type": "str", "required": True},
        "asgi_server_workers": {"type": "int", "default": "{{ computed }}"},
        "asgi_server_release": {"type": "dict", "required": True},
        "nested": {"type": "dict", "options": {"inner": {"type": "int", "default": 3}}},
    }
    checked = specs.preflight_spec(options, ["asgi_server_release"])
    assert set(checked) == {"django_app_name", "asgi_server_workers", "nested"}
    assert checked["asgi_server_workers"] == {"type": "int"}
    assert checked["nested"]["options"]["inner"] == {"type": "int"}
    assert options["asgi_server_workers"]["default"] == "{{ computed }}"


def test_the_rollout_digest_follows_the_code_the_options_and_the_release(tmp_path):
    import shutil

    digest = load("lookup/rollout_digest.py")
    root = Path(__file__).resolve().parents[2]
    assert "asgi_server_kind" in digest.option_names(root, "asgi_server")
    # Options of every entry point count, not only main's.
    assert "asgi_server_colour" in digest.option_names(root, "asgi_server")
    code = digest.collection_digest(root)
    options = {"asgi_server_kind": "uvicorn", "django_app_env": {"A": "1", "B": "2"}}
    same = digest.digest_of(code, {"django_app_env": {"B": "2", "A": "1"}, "asgi_server_kind": "uvicorn"}, {"r": 1})
    assert digest.digest_of(code, options, {"r": 1}) == same
    assert digest.digest_of(code, {**options, "asgi_server_kind": "daphne"}, {"r": 1}) != same
    assert digest.digest_of(code, options, {"r": 2}) != same
    # A copy of the collection with one template changed is other code.
    copy = tmp_path / "collection"
    for tree in ("roles", "playbooks", "plugins"):
        shutil.copytree(root / tree, copy / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    assert digest.collection_digest(copy) == code
    (copy / "roles" / "nginx_proxy" / "templates" / "site.conf.j2").write_text("# changed\n")
    assert digest.collection_digest(copy) != code


SETTINGS_TRACEBACK = """Running as unit: run-u12.service
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/srv/demo/venvs/abc/lib/python3.11/site-packages/django/__main__.py", line 9, in <module>
    management.execute_from_command_line()
  File "/srv/demo/releases/v9/src/demo/settings.py", line 106, in <module>
    SECRET = os.environ["DEMO_HOLDOUT"]
             ~~~~~~~~~~^^^^^^^^^^^^^^^^
  File "<frozen os>", line 679, in __getitem__
KeyError: 'DEMO_HOLDOUT'
Finished with result: exit-code
Main processes terminated with: code=exited/status=1
"""


def test_a_traceback_is_told_by_the_projects_file_and_line_and_the_exception():
    result = {"stderr": SETTINGS_TRACEBACK, "stdout": "", "msg": "non-zero return code"}
    assert command_failure.command_failure(result) == "demo/settings.py:106: KeyError: 'DEMO_HOLDOUT'"


def test_a_traceback_wholly_in_the_venv_is_told_by_its_exception():
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "/srv/demo/venvs/abc/lib/python3.11/site-packages/django/core/management/base.py", line 5, in x\n'
        "django.core.exceptions.ImproperlyConfigured: The STATIC_ROOT setting must not be empty\n"
    )
    assert command_failure.command_failure({"stderr": stderr}) == (
        "django.core.exceptions.ImproperlyConfigured: The STATIC_ROOT setting must not be empty"
    )


def test_other_output_is_told_by_its_last_lines_without_systemd_runs_own():
    stderr = "Running as unit: run-u3.service\nwarming up\nE: Unable to locate package lib pq5\n"
    stderr += "Finished with result: exit-code\n"
    assert command_failure.command_failure({"stderr": stderr}) == "warming up / E: Unable to locate package lib pq5"
    assert command_failure.command_failure({"stderr": "", "msg": "the builder failed"}) == "the builder failed"


def test_a_colour_that_did_not_start_is_told_in_one_line_by_the_cause_its_journal_gives():
    message = (
        "Release f5-broken on uvicorn (green) did not pass its health probe\n(/run/demo/green.sock: -1\n).\n"
        "The previous colour blue keeps serving.\nLast journal lines:\n"
        "Dec 06 21:23:43 app1 uvicorn[4840]: Traceback (most recent call last):\n"
        'Dec 06 21:23:43 app1 uvicorn[4840]:   File "/srv/demo/venvs/6151/lib/python3.11/site-packages/uvicorn/'
        'config.py", line 434, in load_app\n'
        "Dec 06 21:23:43 app1 uvicorn[4840]:     return import_from_string(self.app)\n"
        'Dec 06 21:23:43 app1 uvicorn[4840]:   File "/srv/demo/releases/f5-broken/src/demo/asgi.py", line 22, '
        "in <module>\n"
        'Dec 06 21:23:43 app1 uvicorn[4840]:     raise RuntimeError("release f5 is broken on purpose")\n'
        "Dec 06 21:23:43 app1 uvicorn[4840]: RuntimeError: release f5 is broken on purpose\n"
    )
    assert command_failure.command_failure({"msg": message}) == (
        "Release f5-broken on uvicorn (green) did not pass its health probe (/run/demo/green.sock: -1 )."
        " The previous colour blue keeps serving. demo/asgi.py:22: RuntimeError: release f5 is broken on purpose"
    )


def test_a_journal_with_no_traceback_gives_its_last_lines_and_a_plain_message_one_line():
    message = (
        "Release r2 on granian (blue) did not pass its health probe (/run/demo/blue.sock: 502 ).\nLast journal lines:\n"
        "Dec 06 21:23:43 app1 granian[12]: [ERROR] bind failed\n"
        "Dec 06 21:23:44 app1 systemd[1]: demo@blue.service: Failed with result 'exit-code'.\n"
    )
    assert command_failure.command_failure({"msg": message}).endswith(
        "(/run/demo/blue.sock: 502 ). [ERROR] bind failed / demo@blue.service: Failed with result 'exit-code'."
    )
    assert command_failure.command_failure({"msg": "nginx: [emerg] unknown directive\nnginx: test failed"}) == (
        "nginx: [emerg] unknown directive nginx: test failed"
    )


def test_an_exception_over_several_lines_is_told_by_its_first_paragraph():
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "/srv/demo/venvs/a/lib/python3.11/site-packages/django/contrib/staticfiles/storage.py", line 9, in y\n'
        "    raise ValueError(message)\n"
        "ValueError: The CSS file 'hello/style.css' references a file which could not be found:\n"
        "  hello/missing.png\n"
        "\n"
        "Please check the URL references in this CSS file, particularly any\n"
        "relative paths which might be pointing to the wrong location.\n"
    )
    assert command_failure.command_failure({"stderr": stderr}) == (
        "ValueError: The CSS file 'hello/style.css' references a file which could not be found: hello/missing.png"
    )


def test_what_the_command_said_before_its_traceback_comes_first_and_object_reprs_shrink_to_their_class():
    stderr = (
        "Post-processing 'hello/style.css' failed!\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/demo/venvs/a/lib/python3.11/site-packages/django/contrib/staticfiles/storage.py", line 9, in y\n'
        "    raise processed\n"
        "ValueError: The file 'hello/missing.png' could not be found with"
        " <django.contrib.staticfiles.storage.ManifestStaticFilesStorage object at 0x7f85155d3f90>.\n"
    )
    assert command_failure.command_failure({"stderr": stderr}) == (
        "Post-processing 'hello/style.css' failed! ValueError: The file 'hello/missing.png' could not be found"
        " with ManifestStaticFilesStorage."
    )
