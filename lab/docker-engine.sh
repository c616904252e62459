#!/usr/bin/env bash
# Make sure a Docker engine answers. Installs docker.io from the Debian archive
# when it is missing and starts dockerd by hand where systemd is not PID 1.
set -euo pipefail

log_file=${DOCKERD_LOG:-/var/log/dockerd-lab.log}

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "lab: installing docker.io from the Debian archive"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

if [ "$(ps -o comm= -p 1)" = "systemd" ]; then
  systemctl start docker
else
  echo "lab: starting dockerd (log: $log_file)"
  setsid nohup dockerd >"$log_file" 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "lab: dockerd did not answer within 60 s; see $log_file" >&2
exit 1
