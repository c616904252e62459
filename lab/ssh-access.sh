#!/usr/bin/env bash
# Let the controller in as the deploy user, the way a provider's image does:
# a key pair made once in DIR (id_ed25519), its public half in each host's
# ~deploy/.ssh/authorized_keys, and each host's own SSH host key in
# DIR/known_hosts, so Ansible checks every host it reaches (no trust on first
# use). The base image has sshd, sudo and the deploy user (lab/base-image.sh).
# Usage: lab/ssh-access.sh DIR CONTAINER...
set -euo pipefail
dir=$1
shift
mkdir -p "$dir"
chmod 0700 "$dir"
[ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "django-asgi-lab" -f "$dir/id_ed25519"
public_key=$(cat "$dir/id_ed25519.pub")

known_hosts=$(mktemp "$dir/known_hosts.XXXXXX")
trap 'rm -f "$known_hosts"' EXIT
for container in "$@"; do
  docker exec -i "$container" sh -c \
    'install -d -m 0700 -o deploy -g deploy ~deploy/.ssh &&
     cat >~deploy/.ssh/authorized_keys &&
     chown deploy:deploy ~deploy/.ssh/authorized_keys && chmod 0600 ~deploy/.ssh/authorized_keys' <<<"$public_key"
  state=
  for _ in $(seq 1 60); do
    state=$(docker exec "$container" systemctl is-active ssh.service 2>/dev/null || true)
    [ "$state" != active ] || break
    sleep 0.5
  done
  if [ "$state" != active ]; then
    echo "lab: sshd did not start on $container (ssh.service: ${state:-unknown}); see: docker exec $container journalctl -u ssh" >&2
    exit 1
  fi
  addresses=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$container")
  host_key=$(docker exec "$container" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)
  for address in $addresses; do
    echo "$address $host_key" >>"$known_hosts"
  done
done
chmod 0644 "$known_hosts"
mv "$known_hosts" "$dir/known_hosts"
trap - EXIT
