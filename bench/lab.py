"""The bench's lab: local containers (the load balancer and up to 12 app hosts), commands on them, and
site.yml run on them from the controller's venv.

Shared by the runs beside it (bench.py, scale.py, chaos.py, ...); what they measure on the lab is in
measure.py. All traffic stays on this machine: the load balancer's port is published on 127.0.0.1, the
hosts talk on their own network.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "bench"
APP = "demo"
MAX_HOSTS = 12  # the most app hosts any measurement starts (bench/scale.py)
ROLLOUT_HOSTS = 3
PREFIX = "django-asgi-bench"
NETWORK = "django-asgi-bench"
SUBNET = "172.30.60.0/24"
LB_ADDRESS = "172.30.60.10"
LB_PORT = 18380  # published on 127.0.0.1
LB_URL = f"http://127.0.0.1:{LB_PORT}"

Json = dict[str, Any]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*argv: str, check: bool = True, capture: bool = True, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, check=False, text=True, capture_output=capture, env=env, timeout=3600, cwd=ROOT)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} exited {result.returncode}:\n{(result.stdout or '')[-3000:]}"
            f"\n{(result.stderr or '')[-3000:]}"
        )
    return result.stdout or ""


def container(host: str) -> str:
    return f"{PREFIX}-{host}"


def on_host(host: str, command: str, check: bool = True) -> str:
    return run("docker", "exec", container(host), "sh", "-c", command, check=check)


def app_hosts(count: int) -> list[str]:
    return [f"app{number}" for number in range(1, count + 1)]


def serving_colour(host: str) -> str:
    return on_host(host, f"cat /var/lib/{APP}/active-colour").strip()


def all_at_once(commands: list[list[str]], what: str) -> float:
    """Run the commands side by side; seconds until the last one ends. Any failure is fatal."""
    began = time.perf_counter()
    processes = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for command in commands
    ]
    for process in processes:
        _output, error = process.communicate(timeout=1800)
        if process.returncode != 0:
            raise RuntimeError(f"{what} failed: {error[-2000:]}")
    return round(time.perf_counter() - began, 1)


# --- the lab ------------------------------------------------------------------------------------


def lab_config(count: int) -> Path:
    """A hosts file for lab/up.sh and lab/down.sh: the load balancer and `count` app hosts."""
    lines = [f"lb {LB_ADDRESS} {LB_PORT} -"]
    lines += [f"{host} {address(number)} - -" for number, host in enumerate(app_hosts(count), start=1)]
    path = WORK / f"hosts-{count}.sh"
    path.write_text(
        "# shellcheck shell=bash disable=SC2034\n# Written by bench/lab.py.\n"
        f"LAB_NETWORK={NETWORK}\nLAB_PREFIX={PREFIX}\nLAB_SUBNET={SUBNET}\n"
        "LAB_IMAGE=django-asgi-lab:bookworm\nLAB_HOSTS=(\n" + "".join(f'  "{line}"\n' for line in lines) + ")\n"
    )
    return path


def lab_down() -> None:
    run("lab/down.sh", env=os.environ | {"LAB_CONFIG": str(lab_config(MAX_HOSTS))})


def lab_up(count: int) -> None:
    run("lab/up.sh", env=os.environ | {"LAB_CONFIG": str(lab_config(count))})


def address(number: int) -> str:
    """App host `number`'s address (1, 2, ...); the load balancer's is LB_ADDRESS."""
    return f"172.30.60.{10 + number}"


def write_inventory(count: int, ssh: bool = False) -> Path:
    """The lab's settings, with one SQLite database per host so no database host is needed. Reached
    with docker exec as root, or with ssh as the lab's own inventory does: SSH as the deploy user, sudo
    (the key and the hosts' keys lab/up.sh wrote)."""
    inventory = WORK / f"inventory-{count}{'-ssh' if ssh else ''}"
    shutil.rmtree(inventory, ignore_errors=True)
    inventory.mkdir(parents=True)
    keys = ROOT / ".cache" / "ssh" / PREFIX
    connection = (
        {
            "ansible_connection": "ssh",
            "ansible_user": "deploy",
            "ansible_become": True,
            "ansible_ssh_private_key_file": str(keys / "id_ed25519"),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={keys / 'known_hosts'} -o StrictHostKeyChecking=yes",
        }
        if ssh
        # community.docker.docker, by the name Mitogen also knows.
        else {"ansible_connection": "docker", "ansible_user": "root"}
    )
    hosts = {
        "all": {
            "vars": {**connection, "django_app_name": APP},
            "children": {
                "load_balancers": {"hosts": {"lb": {"ansible_host": LB_ADDRESS if ssh else container("lb")}}},
                "app_servers": {
                    "hosts": {
                        host: {
                            "ansible_host": address(number) if ssh else container(host),
                            "load_balancer_backend_address": address(number),
                        }
                        for number, host in enumerate(app_hosts(count), start=1)
                    },
                    "vars": {
                        "django_app_source": str(ROOT / "examples" / "demo"),
                        "django_app_asgi_module": "demo.asgi:application",
                        "django_app_migrate_once": False,
                        "django_app_controller_cache": str(WORK / "controller-cache"),
                        "django_app_env": {
                            "DEMO_SECRET_KEY": "bench-only-not-a-secret-61d7",
                            "DEMO_DATABASE_PATH": f"/srv/{APP}/shared/db.sqlite3",
                        },
                        "nginx_proxy_trusted_proxies": [f"{LB_ADDRESS}/32"],
                    },
                },
            },
        }
    }
    # JSON is YAML, and needs no YAML library here.
    (inventory / "hosts.yml").write_text(json.dumps(hosts, indent=1) + "\n")
    return inventory / "hosts.yml"


# --- Ansible --------------------------------------------------------------------------------------


RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def mitogen_environment() -> dict[str, str]:
    """Ansible run by Mitogen's strategy: one Python interpreter per host, kept for the whole run."""
    import ansible_mitogen  # pinned in requirements-dev.txt

    strategies = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(strategies), "ANSIBLE_STRATEGY": "mitogen_linear"}


def playbook_command(inventory: Path, playbook: str, *extra: str) -> list[str]:
    """ansible-playbook of the controller's venv on an inventory, below the hosts' priority: the controller is
    another machine in a real fleet; here it shares the CPUs with the hosts it drives and the load it measures."""
    return [
        "nice",
        "-n",
        "10",
        str(ROOT / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        str(inventory),
        playbook,
        *extra,
    ]


def site(
    inventory: Path,
    *extra: str,
    environment: dict[str, str] | None = None,
    playbook: str = "site.yml",
    tree: Path = ROOT,
    check: bool = True,
) -> Json:
    """Run site.yml (or another playbook) of tree; return wall and controller CPU seconds, the recap and
    the module runs on each host (bench/callback_plugins/module_runs.py). A run that fails raises, unless
    check is false: then its exit code is in the result."""
    counts = WORK / "module-runs.json"
    counts.unlink(missing_ok=True)
    counting = {
        "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "bench" / "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "module_runs",
        "MODULE_RUNS_OUTPUT": str(counts),
    }
    before = os.times()
    began = time.perf_counter()
    result = subprocess.run(
        playbook_command(inventory, playbook, *extra),
        env=os.environ | counting | (environment or {}),
        cwd=tree,
        text=True,
        capture_output=True,
        timeout=3600,
        check=False,
    )
    seconds = time.perf_counter() - began
    after = os.times()
    output = result.stdout + result.stderr
    (WORK / "last-playbook.log").write_text(output)
    if check and result.returncode != 0:
        raise RuntimeError(f"{playbook} {' '.join(extra)} failed:\n{output[-4000:]}")
    recap = {host: {"ok": int(ok), "changed": int(changed)} for host, ok, changed, _u, _f in RECAP.findall(output)}
    counted = json.loads(counts.read_text()) if counts.exists() else {"hosts": {}, "plays": []}
    return {
        "returncode": result.returncode,
        "seconds": round(seconds, 1),
        "controller_cpu_seconds": round(
            (after.children_user - before.children_user) + (after.children_system - before.children_system), 1
        ),
        "changed": sum(host["changed"] for host in recap.values()),
        "recap": recap,
        "module_runs": counted["hosts"],
        "plays": counted["plays"],
    }


# --- the machine -----------------------------------------------------------------------------------


def machine() -> Json:
    """The machine the lab and the controller share, as every run's results record it."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME").strip(),
        "docker": run("docker", "version", "-f", "{{.Server.Version}}").strip(),
        "python": platform.python_version(),
        "ansible_core": run(str(ROOT / ".venv" / "bin" / "ansible"), "--version").splitlines()[0],
        "commit": run("git", "rev-parse", "--short", "HEAD", check=False).strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
