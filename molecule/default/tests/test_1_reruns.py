"""Running site.yml again: a host that already serves what the run makes is left alone.

Each app host records a digest of everything that went into it when it last
switched (the collection's code, its options, the release and its wheelhouse);
a run that makes the same digest skips the build, the migrations and the
switch there. -e rollout_force=true runs every step anyway, and then too
nothing changes: the steps themselves are idempotent.

The file runs first (test_1_...): on the hosts the converge left, its first
run changes nothing; after the installed collection's deploy, it would have
to deploy again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import testinfra

from conftest import run_playbook

INVENTORY = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
APP_HOSTS = ["django-asgi-default-app1", "django-asgi-default-app2"]
# A task of the build that runs on every host the run does not leave alone.
BUILD_TASK = "TASK [django_asgi.rollout.django_app : Read what the host was set up from, and this release's records]"
# Tasks of the host's setup, which a host records it was set up from and skips while that holds.
SETUP_TASKS = [
    "TASK [django_asgi.rollout.django_app : Install what builds release venvs]",
    "TASK [django_asgi.rollout.nginx_proxy : Install nginx]",
]
# Tasks of the switch: the colour chosen, the site checked by nginx -t, the old colour retired.
SWITCH_TASKS = [
    "TASK [django_asgi.rollout.asgi_server : Read which colour serves, and what each colour runs]",
    "TASK [django_asgi.rollout.nginx_proxy : Write and enable the site, checked by nginx -t]",
    "TASK [django_asgi.rollout.asgi_server : Drain and stop the previous colour, and start the serving",
]
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def recap(output: str) -> dict[str, tuple[int, int]]:
    """(ok, changed) of each host, from the play recap."""
    return {host: (int(ok), int(changed)) for host, ok, changed, _u, _f in RECAP.findall(output)}


def test_a_run_that_changes_nothing_leaves_every_app_host_alone_and_a_forced_one_changes_nothing():
    # The file runs first: the hosts are as the converge and its idempotence run left them.
    returncode, skipped = run_playbook("site.yml")
    assert returncode == 0, skipped[-4000:]
    assert BUILD_TASK not in skipped, "a host that serves what the run makes was built again"
    for task in SWITCH_TASKS:
        assert task not in skipped, f"a host that serves what the run makes went through {task}"
    skipped_recap = recap(skipped)
    for host in APP_HOSTS:
        assert skipped_recap[host][1] == 0, f"{host} changed in a run that changes nothing"

    returncode, forced = run_playbook("site.yml", "-e", "rollout_force=true")
    assert returncode == 0, forced[-4000:]
    assert BUILD_TASK in forced, "rollout_force=true did not run the build"
    for task in SWITCH_TASKS:
        assert task in forced, f"rollout_force=true did not run {task}"
    for task in SETUP_TASKS:
        # Shown as skipped too: it must have run.
        section = re.search(rf"^{re.escape(task)}.*?(?=^TASK )", forced, re.M | re.S)
        ran = section and re.search(r"^(ok|changed): ", section.group(0), re.M)
        assert ran, f"rollout_force=true did not run {task}"
    forced_recap = recap(forced)
    for host in APP_HOSTS:
        assert forced_recap[host][1] == 0, f"{host} changed in a forced run that changes nothing"
        # The run that leaves the host alone does less work.
        assert skipped_recap[host][0] < forced_recap[host][0], (skipped_recap[host], forced_recap[host])


def test_a_host_whose_nginx_was_stopped_is_not_left_alone_and_serves_again():
    stopped = testinfra.get_host(f"ansible://{APP_HOSTS[1]}?ansible_inventory={INVENTORY}")
    stopped.run("systemctl stop nginx.service")
    returncode, output = run_playbook("site.yml")
    assert returncode == 0, output[-4000:]
    assert stopped.service("nginx").is_running
    # Only the stopped host went through the build.
    build = re.compile(rf"^{re.escape(BUILD_TASK)}.*?(?=^TASK )", re.M | re.S)
    ran_on = build.search(output)
    assert ran_on and f"ok: [{APP_HOSTS[1]}]" in ran_on.group(0), output[-4000:]
    assert f"[{APP_HOSTS[0]}]" not in ran_on.group(0)
