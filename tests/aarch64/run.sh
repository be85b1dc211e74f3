#!/usr/bin/env bash
# The kiosk's models on aarch64 (the Pi's architecture), under qemu-user emulation in a Debian 12
# arm64 root: the golden answers (tests/edge/test_golden.py) and the runtime-parity check
# (ai-edge-litert against tflite-runtime, benchmarks/runtime_parity.py) under both kiosk runtimes,
# then, for information, how far aarch64's answers are from x86-64's on the same films.
#
# Usage: tests/aarch64/run.sh [--write-golden]
#   --write-golden  write the aarch64 golden answers (after a deliberate model change)
# Needs root (chroot, bind mounts), debootstrap, qemu-user-static registered with binfmt_misc for
# aarch64, the training environment (.venv, the x86-64 reference) and the site films
# (FILMS, default ../shared/data/site-calibration). The arm64 root with both kiosk environments is
# built once (debootstrap under emulation: about 10 minutes here) and cached in
# PNEUMOEDGE_AARCH64_CACHE (default ~/.cache/pneumoedge/aarch64), keyed by this file and the
# requirements; MIRROR overrides deb.debian.org.
set -Eeuo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${PNEUMOEDGE_AARCH64_CACHE:-${HOME}/.cache/pneumoedge/aarch64}"
films="$(realpath -m "${FILMS:-${repo}/../shared/data/site-calibration}")"
mirror="${MIRROR:-http://deb.debian.org/debian}"
requirements=(requirements-edge.txt requirements-edge-tflite-runtime.txt requirements-test-edge.txt)
write_golden=0
[[ "${1:-}" == --write-golden ]] && write_golden=1

log() { printf '[aarch64] %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 2
}

[[ "$(id -u)" == 0 ]] || die "needs root (debootstrap, chroot, bind mounts)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] ||
	die "aarch64 binaries cannot run here: apt-get install qemu-user-static binfmt-support"
[[ -x "${repo}/.venv/bin/python" ]] || die "no training environment: make .venv/.installed first"
[[ -d "$films" ]] || die "no site films at ${films} (FILMS=... names them)"

key="$(cat "$0" "${requirements[@]/#/${repo}/}" | sha256sum | cut -c1-16)"
root="${cache}/root-${key}"

# The wheels for the Pi's Python (Debian 12: 3.11) are fetched on the host, like a clinic's bundle,
# and installed inside the root without an index.
build_root() {
	local tmp="${root}.tmp"
	rm -rf "$tmp"
	log "debootstrap arm64 bookworm into ${tmp} (under emulation: about 10 minutes)"
	debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv bookworm "$tmp" "$mirror" >&2
	mkdir -p "${tmp}/wheels"
	cp "${requirements[@]/#/${repo}/}" "${tmp}/wheels/"
	local runtime
	for runtime in requirements-edge.txt requirements-edge-tflite-runtime.txt; do
		"${repo}/.venv/bin/pip" download --quiet --only-binary=:all: --python-version 3.11 --implementation cp \
			--platform manylinux_2_36_aarch64 --platform manylinux_2_34_aarch64 --platform manylinux_2_28_aarch64 \
			--platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
			-d "${tmp}/wheels" -r "${repo}/${runtime}" -r "${repo}/requirements-test-edge.txt"
	done
	install_venv "$tmp" litert requirements-edge.txt
	install_venv "$tmp" tflite requirements-edge-tflite-runtime.txt
	mv "$tmp" "$root"
}

install_venv() {
	local at="$1" name="$2" runtime="$3"
	log "kiosk environment ${name} (${runtime}) in the arm64 root"
	chroot "$at" /usr/bin/python3 -m venv "/opt/venv-${name}"
	chroot "$at" "/opt/venv-${name}/bin/pip" install --quiet --no-index --find-links /wheels \
		-r "/wheels/${runtime}" -r /wheels/requirements-test-edge.txt
}

[[ -d "$root" ]] || build_root

# The repository and the films appear at their own paths inside the root. /sys stays unmounted: the
# runtimes' cpuinfo would read the host's x86 CPU list there and crash under emulation; without it
# they say "Error in cpuinfo" and run on one thread.
mounted=()
bind() {
	mkdir -p "${root}$1"
	mount --bind "$1" "${root}$1"
	mounted=("${root}$1" "${mounted[@]}")
	[[ "$2" == ro ]] && mount -o remount,bind,ro "${root}$1"
	return 0
}
cleanup() { for m in "${mounted[@]}"; do umount "$m" || true; done; }
trap cleanup EXIT
bind "$repo" "$([[ $write_golden == 1 ]] && echo rw || echo ro)"
bind "$films" ro
mount -t proc proc "${root}/proc"
mounted=("${root}/proc" "${mounted[@]}")

for name in litert tflite; do
	cat >"${cache}/python-${name}" <<EOF
#!/bin/sh
# The arm64 root's ${name} kiosk environment, run under qemu-user from the caller's directory.
exec chroot "${root}" /usr/bin/env -i -C "\$PWD" PATH=/usr/bin:/bin LANG=C.UTF-8 \\
	PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="\$PWD" /opt/venv-${name}/bin/python "\$@"
EOF
	chmod +x "${cache}/python-${name}"
done

cd "$repo"
if ((write_golden)); then
	for name in litert tflite; do "${cache}/python-${name}" -m benchmarks.golden --write; done
fi
for name in litert tflite; do
	log "golden answers under ${name} on aarch64"
	"${cache}/python-${name}" -m pytest -q -p no:cacheprovider tests/edge/test_golden.py
done
log "runtime parity on aarch64: ai-edge-litert (reference) against tflite-runtime, ${films}"
.venv/bin/python -m benchmarks.runtime_parity --no-latency --films "$films" \
	--python "${cache}/python-litert" "${cache}/python-tflite"
log "for information, not a check: x86-64 (reference, this machine's .venv) against aarch64"
.venv/bin/python -m benchmarks.runtime_parity --no-latency --films "$films" \
	--python .venv/bin/python "${cache}/python-litert" "${cache}/python-tflite" || true
