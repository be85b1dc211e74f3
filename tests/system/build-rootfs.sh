#!/usr/bin/env bash
# Build the Debian 12 root file system the booted system test runs on (tests/system/): a minimal
# bookworm with systemd as PID 1, the kernel, Python and what provision.sh/update.sh need, plus two
# test-only pieces: a boot-time launcher for the test agent (which comes, with the bundles and the
# stand-in browser, on a second disk: the technician's USB stick) and a port forwarder so the host
# can reach the loopback-only kiosk. No PneumoEdge code is baked in.
#
# Usage: tests/system/build-rootfs.sh OUTPUT_DIR
# Writes OUTPUT_DIR/rootfs (root-owned) and OUTPUT_DIR/.complete. Needs root and debootstrap;
# downloads from deb.debian.org (MIRROR overrides it). About 3-10 minutes.
# The test's cache key is this file's sha256: any change here rebuilds the root file system.
set -Eeuo pipefail

out="${1:?usage: $0 OUTPUT_DIR}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
packages=systemd-sysv,udev,dbus,libpam-systemd,linux-image-amd64,python3,python3-venv,openssl,procps,iproute2,sqlite3

if [[ "$(id -u)" != 0 ]]; then
	echo "build-rootfs.sh: needs root (debootstrap, chroot)" >&2
	exit 2
fi
command -v debootstrap >/dev/null || {
	echo "build-rootfs.sh: debootstrap is not installed (apt-get install debootstrap)" >&2
	exit 2
}

mkdir -p "$out"
rm -rf "${out}/rootfs.tmp" "${out}/.complete"
root="${out}/rootfs.tmp"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror"

echo pneumoedge-test >"${root}/etc/hostname"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"${root}/etc/fstab"
# QEMU's user network: the guest is 10.0.2.15; the host's hostfwd reaches it there.
cat >"${root}/etc/systemd/network/10-qemu.network" <<'UNIT'
[Match]
Name=en* eth*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
UNIT
# Test only: the kiosk listens on 127.0.0.1 (by design, and its unit allows only localhost), so a
# forwarder on the guest's user-net address passes the host's requests (hostfwd to port 18080) on.
cat >"${root}/etc/systemd/system/pneumoedge-test-proxy.socket" <<'UNIT'
[Unit]
Description=TEST ONLY: forward 10.0.2.15:18080 to the kiosk's loopback port, for the host

[Socket]
ListenStream=18080

[Install]
WantedBy=sockets.target
UNIT
cat >"${root}/etc/systemd/system/pneumoedge-test-proxy.service" <<'UNIT'
[Unit]
Description=TEST ONLY: forwarder to the kiosk's loopback port

[Service]
ExecStart=/lib/systemd/systemd-socket-proxyd 127.0.0.1:8080
UNIT
# Test only: the agent on the test disk (label PNEUMOTEST) drives each boot; its output goes to
# the serial console, where the host reads it.
cat >"${root}/etc/systemd/system/pneumoedge-test-agent.service" <<'UNIT'
[Unit]
Description=TEST ONLY: run the system test's agent from the test disk
After=multi-user.target
Wants=multi-user.target

[Service]
Type=simple
ExecStartPre=/bin/mkdir -p /media/usb
ExecStartPre=/bin/mount -o ro LABEL=PNEUMOTEST /media/usb
ExecStart=/bin/bash /media/usb/test/agent.sh
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable systemd-networkd.service pneumoedge-test-agent.service pneumoedge-test-proxy.socket
# A throwaway guest: root has no password on the serial console.
chroot "$root" passwd -d root >/dev/null
rm -rf "${root}/var/cache/apt/archives"/*.deb "${root}/var/lib/apt/lists"/*
rm -rf "${out}/rootfs"
mv "$root" "${out}/rootfs"
touch "${out}/.complete"
echo "build-rootfs.sh: ${out}/rootfs is ready"
