# shellcheck shell=bash
# Target presets for build-bundle.sh: which wheels a device needs (CPU, Python, glibc, runtime).
# Sourced after common.sh.
# shellcheck disable=SC2034  # TARGET_* are read by build-bundle.sh

TARGET_PRESETS="pi64-bookworm pi64-trixie pi32-bookworm local"

# _manylinux_tags ARCH GLIBC_MINOR: every manylinux tag a glibc 2.GLIBC_MINOR system accepts.
_manylinux_tags() {
	local arch="$1" newest="$2" minor
	for ((minor = 17; minor <= newest; minor++)); do
		printf 'manylinux_2_%s_%s\n' "$minor" "$arch"
	done
	printf 'manylinux2014_%s\n' "$arch"
}

# set_target PRESET: set TARGET_ARCH, TARGET_PYTHON (X.Y), TARGET_PLATFORMS (array, empty = this
# machine), TARGET_REQUIREMENTS (relative to the repository) and TARGET_EXTRA_INDEX.
set_target() {
	TARGET_EXTRA_INDEX=""
	TARGET_PLATFORMS=()
	case "$1" in
	pi64-bookworm) # Raspberry Pi 4/5 (and Zero 2 W) on 64-bit Raspberry Pi OS 12: glibc 2.36
		TARGET_ARCH=aarch64 TARGET_PYTHON=3.11 TARGET_REQUIREMENTS=requirements-edge.txt
		mapfile -t TARGET_PLATFORMS < <(_manylinux_tags aarch64 36)
		;;
	pi64-trixie) # Raspberry Pi 4/5 on 64-bit Raspberry Pi OS 13: glibc 2.41
		TARGET_ARCH=aarch64 TARGET_PYTHON=3.13 TARGET_REQUIREMENTS=requirements-edge.txt
		mapfile -t TARGET_PLATFORMS < <(_manylinux_tags aarch64 41)
		;;
	pi32-bookworm) # Pi Zero 2 W / any Pi on 32-bit Raspberry Pi OS 12: tflite-runtime, numpy<2
		TARGET_ARCH=armv7l TARGET_PYTHON=3.11 TARGET_REQUIREMENTS=requirements-edge-tflite-runtime.txt
		mapfile -t TARGET_PLATFORMS < <(_manylinux_tags armv7l 36)
		TARGET_PLATFORMS+=(linux_armv7l)
		TARGET_EXTRA_INDEX="$PIWHEELS_URL"
		;;
	local) # this machine's CPU and BUILD_PYTHON's version: for tests and x86 kiosks
		TARGET_ARCH="$(uname -m)"
		TARGET_PYTHON="$("$BUILD_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
		TARGET_REQUIREMENTS=requirements-edge.txt
		;;
	*)
		die "unknown target '$1'; valid targets: ${TARGET_PRESETS}"
		;;
	esac
}
