#!/usr/bin/env bash
# Remove the lab's containers and network (the base image stays cached).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# LAB_CONFIG names another hosts file of the same form (bench/ uses its own).
# shellcheck source=lab/hosts.sh
source "${LAB_CONFIG:-$here/hosts.sh}"
for entry in "${LAB_HOSTS[@]}"; do
  read -r name _ <<<"$entry"
  docker rm -f "$LAB_PREFIX-$name" >/dev/null 2>&1 || true
done
docker network rm "$LAB_NETWORK" >/dev/null 2>&1 || true
echo "lab: removed"
