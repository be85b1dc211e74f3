#!/usr/bin/env bash
# The kiosk's models on aarch64 (the Pi's architecture), under qemu-user emulation in a Debian 12
# arm64 root, under both kiosk runtimes (ai-edge-litert, tflite-runtime): the golden answers
# (tests/edge/test_golden.py, aarch64's own) and the runtime-parity check (benchmarks/runtime_parity.py)
# of the float32 bundle against x86-64; then, for information, the int8 bundle's differences (its
# built-in kernels round differently on aarch64, and differently again between the two runtimes).
#
# Usage: tests/aarch64/run.sh [--write-golden]
#   --write-golden  write the aarch64 golden answers (after a deliberate model change)
# PER_CLASS: parity films per class (default 10; a float32 film takes about 10 s under emulation).
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
# 77: this machine cannot run the test (automake's "skipped"); CI tells it apart from a failure.
die() {
	log "$*"
	exit 77
}

[[ "$(id -u)" == 0 ]] || die "needs root (debootstrap, chroot, bind mounts)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] ||
	die "aarch64 binaries cannot run here: apt-get install qemu-user-static binfmt-support"
[[ -x "${repo}/.venv/bin/python" ]] || die "no training environment: make .venv/.installed first"
[[ -d "$films" ]] || die "no site films at ${films} (FILMS=... names them)"

# The root's cache key: what goes into it (ROOT_RECIPE: bump it when build_root changes) and the
# requirements, not the rest of this script.
ROOT_RECIPE="bookworm arm64 minbase python3 python3-venv; cp311 wheels; venv-litert venv-tflite; v1"
key="$({ echo "$ROOT_RECIPE"; cat "${requirements[@]/#/${repo}/}"; } | sha256sum | cut -c1-16)"
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
	chroot "$at" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/python3 -m venv "/opt/venv-${name}"
	chroot "$at" /usr/bin/env -i PATH=/usr/bin:/bin "/opt/venv-${name}/bin/pip" install --quiet \
		--no-index --find-links /wheels -r "/wheels/${runtime}" -r /wheels/requirements-test-edge.txt
}

if [[ ! -d "$root" ]]; then
	# A root that cannot be built (no mirror, no PyPI, emulation refused) is this machine's problem,
	# not the product's: say so and exit 77 like the other missing prerequisites.
	trap 'die "could not build the arm64 root (message above): this machine cannot run the test"' ERR
	build_root
	trap - ERR
fi

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
trap 'exit 143' TERM INT # so that a time box's SIGTERM still unmounts
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
parity=(.venv/bin/python -m benchmarks.runtime_parity --no-latency --films "$films"
	--per-class "${PER_CLASS:-10}" --worker-timeout 3600)
log "float32 parity, a check: x86-64 (reference) against both runtimes on aarch64"
"${parity[@]}" --model models/mobilenetv2-float32 \
	--python .venv/bin/python "${cache}/python-litert" "${cache}/python-tflite"
log "int8 on aarch64 against x86-64, for information, not a check: the built-in int8 kernels round"
log "differently on each (docs/deployment.md, 'On aarch64')"
"${parity[@]}" --model models/mobilenetv2-int8 \
	--python .venv/bin/python "${cache}/python-litert" "${cache}/python-tflite" || true
