#!/usr/bin/env bash
# Build the systemd base image of the lab and molecule hosts from the Debian
# archive (no container registry is needed), unless it already exists.
# Usage: lab/base-image.sh [bookworm|trixie]
# Both boot the same way on a cgroup v1 host (Docker's hybrid layout, mounted
# by Docker itself): trixie's systemd 257 only marks itself tainted
# "cgroupsv1" and reaches "running"; it needs no extra arguments.
set -euo pipefail

suite=${1:-bookworm}
image="django-asgi-lab:${suite}"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What Ansible and the tests need on a bare host, as a provider's Debian image
# has it: sshd and sudo for the deploy user (lab/ssh-access.sh gives it a key).
# Everything the roles install themselves (nginx, python3-venv) is left out on
# purpose.
packages=systemd,systemd-sysv,dbus,python3,python3-apt,ca-certificates,iproute2,procps,curl,tar,gzip,locales,openssh-server,sudo
# The image carries the digest of this script: a changed recipe builds anew.
recipe=$(sha256sum "$0" | cut -c1-16)

if [ "$(docker image inspect -f '{{ index .Config.Labels "django-asgi-lab.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

rootfs=$(mktemp -d /var/tmp/django-asgi-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "lab: building $image with debootstrap (about a minute)"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -20 "$rootfs.log" >&2
  exit 1
}
rm -f "$rootfs.log"

# A container has no consoles or hardware to wait for.
for unit in getty.target systemd-udevd.service systemd-udev-trigger.service \
            systemd-remount-fs.service sys-kernel-debug.mount dev-hugepages.mount; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
echo "lab-host" >"$rootfs/etc/hostname"

# The deploy user: a key login (no password), and sudo without one, as
# Ansible's --become needs. Its key is installed when a host starts.
chroot "$rootfs" useradd --create-home --shell /bin/bash --password '*' deploy
echo 'deploy ALL=(ALL:ALL) NOPASSWD: ALL' >"$rootfs/etc/sudoers.d/deploy"
chmod 0440 "$rootfs/etc/sudoers.d/deploy"
# Every host makes its own SSH host keys on its first boot, before sshd starts.
rm -f "$rootfs"/etc/ssh/ssh_host_*
cat >"$rootfs/etc/systemd/system/lab-ssh-host-keys.service" <<'UNIT'
[Unit]
Description=Make this host's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
UNIT
mkdir -p "$rootfs/etc/systemd/system/ssh.service.wants"
ln -sf ../lab-ssh-host-keys.service "$rootfs/etc/systemd/system/ssh.service.wants/lab-ssh-host-keys.service"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin
# apt counts its lists as fresh by their directory's mtime: make it old, so
# the roles' first apt task refreshes them.
touch -d @0 "$rootfs/var/lib/apt/lists"

tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  --change "LABEL django-asgi-lab.recipe=$recipe" \
  - "$image" >/dev/null
echo "lab: built $image"
