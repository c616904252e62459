#!/usr/bin/env bash
# Start the lab: a Docker engine, the systemd base image, and one container per
# lab host running real systemd and sshd, reached by Ansible over SSH as the
# deploy user with sudo (lab/ssh-access.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# LAB_CONFIG names another hosts file of the same form (bench/ uses its own).
# shellcheck source=lab/hosts.sh
source "${LAB_CONFIG:-$here/hosts.sh}"

"$here/docker-engine.sh"
"$here/base-image.sh" bookworm
"$here/tls-certificate.sh" "$here/../.cache/tls"

docker network inspect "$LAB_NETWORK" >/dev/null 2>&1 ||
  docker network create --subnet "$LAB_SUBNET" "$LAB_NETWORK" >/dev/null

for entry in "${LAB_HOSTS[@]}"; do
  read -r name address http_port https_port <<<"$entry"
  container="$LAB_PREFIX-$name"
  if docker container inspect "$container" >/dev/null 2>&1; then
    state=$(docker container inspect -f '{{.State.Status}}' "$container")
    # A host from an older base image (without sshd, say) is made anew.
    if [ "$(docker container inspect -f '{{.Image}}' "$container")" != "$(docker image inspect -f '{{.Id}}' "$LAB_IMAGE")" ]; then
      echo "lab: $name runs an older base image: replacing it"
      docker rm -f "$container" >/dev/null
      state=missing
    fi
  else
    state=missing
  fi
  case "$state" in
    running) continue ;;
    missing) ;;
    *) docker start "$container" >/dev/null; continue ;;
  esac
  ports=()
  [ "$http_port" = - ] || ports+=(-p "127.0.0.1:$http_port:80")
  [ "$https_port" = - ] || ports+=(-p "127.0.0.1:$https_port:443")
  # What real systemd needs here: see the project's environment notes.
  docker run -d --name "$container" --hostname "$name" --network "$LAB_NETWORK" --ip "$address" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    --stop-signal SIGRTMIN+3 \
    "${ports[@]}" \
    "$LAB_IMAGE" /lib/systemd/systemd >/dev/null
done

containers=()
for entry in "${LAB_HOSTS[@]}"; do
  read -r name _ <<<"$entry"
  containers+=("$LAB_PREFIX-$name")
  for _ in $(seq 1 30); do
    state=$(docker exec "$LAB_PREFIX-$name" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 1
  done
  echo "lab: $name is up (systemd: ${state:-unknown})"
done

# SSH as the deploy user, with sudo: how Ansible reaches the lab's hosts.
"$here/ssh-access.sh" "$here/../.cache/ssh/$LAB_PREFIX" "${containers[@]}"
