#!/usr/bin/env bash
# Remove the lab's containers and network (the base image stays cached).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/hosts.sh
source "$here/hosts.sh"
for entry in "${LAB_HOSTS[@]}"; do
  read -r name _ <<<"$entry"
  docker rm -f "django-asgi-lab-$name" >/dev/null 2>&1 || true
done
docker network rm "$LAB_NETWORK" >/dev/null 2>&1 || true
echo "lab: removed"
