# shellcheck shell=bash disable=SC2034
# Sourced, not run; the scripts that source it read the variables below.
# The lab's hosts, shared by lab/up.sh and lab/down.sh: name, address on the
# lab network, and the ports published on 127.0.0.1 (HTTP, HTTPS; '-' for
# none). inventories/lab/hosts.yml names the same hosts and addresses; lab/up.sh
# lets the controller in over SSH (lab/ssh-access.sh).
LAB_NETWORK=django-asgi-lab
LAB_PREFIX=django-asgi-lab  # container names: <prefix>-<host>
LAB_SUBNET=172.30.57.0/24
LAB_IMAGE=django-asgi-lab:bookworm
LAB_HOSTS=(
  "lb   172.30.57.10 8080 -"
  "app1 172.30.57.11 8081 8441"
  "app2 172.30.57.12 8082 8442"
  "app3 172.30.57.13 8083 8443"
  "db   172.30.57.20 - -"
)
