#!/usr/bin/env bash
# Write a prepared Raspberry Pi OS image to an SD card, refusing any disk that could be the
# wrong one, then read it back and verify its checksum.
set -Eeuo pipefail
SCRIPT_NAME=flash-sd
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

# Where the kernel's view of disks is read; tests point these at fakes.
SYSFS_ROOT="${SYSFS_ROOT:-/sys}"
MOUNTS_FILE="${MOUNTS_FILE:-/proc/self/mounts}"
SWAPS_FILE="${SWAPS_FILE:-/proc/swaps}"
CMDLINE_FILE="${CMDLINE_FILE:-/proc/cmdline}"
# Mount points that only the running system's own disk carries.
SYSTEM_MOUNTS=(/ /boot /boot/efi /boot/firmware /usr /var /home /media/root-ro)

usage() {
	cat <<USAGE
Usage: sudo $0 [options] IMAGE DEVICE

Write IMAGE (.img, .img.xz or .img.gz) to the whole disk DEVICE (e.g. /dev/sdb, /dev/mmcblk0),
then read the card back and compare its sha256 with the image's.

Refused always: the disk the system runs from, a disk with a mounted partition or one in use
(swap, LVM, LUKS), a partition instead of a whole disk, a write-protected card, a card smaller
than the image. Refused unless --force: a disk the kernel does not report as removable.
It shows the disk's model and size and asks you to type its name before erasing it.

Options:
  --sha256 HEX         check the image file against this sha256 first (as published with it)
  --sha256-file FILE   the same, read from a .sha256 file (first field)
  --yes                do not ask for confirmation (scripts)
  --force              allow a non-removable disk (an internal card reader may report one)
  --dry-run            do every check and show what would be written; write nothing
  -h, --help           show this help

Environment (for tests): SYSFS_ROOT (default /sys), MOUNTS_FILE (/proc/self/mounts),
SWAPS_FILE (/proc/swaps), CMDLINE_FILE (/proc/cmdline).
Log: \${XDG_STATE_HOME:-~/.local/state}/pneumoedge/flash-sd.log
USAGE
}

IMAGE=""
DEVICE=""
EXPECTED_IMAGE_SHA=""
ASSUME_YES=0
FORCE=0

parse_args() {
	local positional=()
	while (($#)); do
		case "$1" in
		--sha256) EXPECTED_IMAGE_SHA="${2:?--sha256 needs a hex digest}" && shift ;;
		--sha256-file)
			[[ -f "${2:?--sha256-file needs a file}" ]] || die "--sha256-file $2 does not exist"
			read -r EXPECTED_IMAGE_SHA _ <"$2" || die "cannot read $2"
			shift
			;;
		--yes) ASSUME_YES=1 ;;
		--force) FORCE=1 ;;
		--dry-run) DRY_RUN=1 ;;
		-h | --help) usage && exit 0 ;;
		-*) die "unknown option $1; see $0 --help" ;;
		*) positional+=("$1") ;;
		esac
		shift
	done
	((${#positional[@]} == 2)) || die "give exactly an IMAGE and a DEVICE (got ${#positional[@]} arguments); see $0 --help"
	IMAGE="${positional[0]}"
	DEVICE="${positional[1]}"
}

# stream_image: the image's raw bytes on stdout, decompressing as needed.
stream_image() {
	case "$IMAGE" in
	*.xz) xz -dc -- "$IMAGE" ;;
	*.gz) gzip -dc -- "$IMAGE" ;;
	*) cat -- "$IMAGE" ;;
	esac
}

IMAGE_SIZE=0
IMAGE_SHA=""

check_prerequisites() {
	local tools=(dd sha256sum head readlink stat)
	case "$IMAGE" in
	*.xz) tools+=(xz) ;;
	*.gz) tools+=(gzip) ;;
	*.zip | *.bz2 | *.zst | *.7z) die "${IMAGE}: this compression is not supported; decompress it to .img (or use .img.xz / .img.gz)" ;;
	esac
	need "${tools[@]}"
}

check_image() {
	[[ -f "$IMAGE" ]] || die "image ${IMAGE} does not exist"
	if [[ -n "$EXPECTED_IMAGE_SHA" ]]; then
		local actual
		actual="$(sha256sum -- "$IMAGE" | cut -d' ' -f1)"
		[[ "$actual" == "${EXPECTED_IMAGE_SHA,,}" ]] ||
			die "${IMAGE} has sha256 ${actual}, expected ${EXPECTED_IMAGE_SHA}: the download is damaged. Download it again."
		log "image file matches the expected sha256"
	fi
	IMAGE_SIZE="$(image_size)" || exit 1
	((IMAGE_SIZE > 0)) || die "${IMAGE} is empty"
	log "image: ${IMAGE_SIZE} bytes once written"
}

# image_size: the raw image's size without writing it anywhere: an .xz file records it (no
# decompression), a .gz file is decompressed once (gzip -l is wrong above 4 GiB).
image_size() {
	case "$IMAGE" in
	*.xz)
		xz --robot --list -- "$IMAGE" | awk '$1 == "totals" { print $5 }' ||
			die "${IMAGE} is not a readable .xz file; download it again"
		;;
	*.gz)
		log "decompressing once to learn the image's size"
		gzip -dc -- "$IMAGE" | wc -c || die "${IMAGE} is not a readable .gz file; download it again"
		;;
	*) stat -c %s -- "$IMAGE" ;;
	esac
}

DISK=""
DISK_SYS=""
DISK_SIZE=0
DISK_MODEL=""
DISK_REMOVABLE=0

# _source_name SOURCE: the kernel name (sdb1, mmcblk0p2) behind a mount source.
_source_name() {
	local source="$1" root_arg
	if [[ "$source" == /dev/root ]]; then
		root_arg="$(tr ' ' '\n' <"$CMDLINE_FILE" 2>/dev/null | sed -n 's/^root=//p' | head -n1)"
		case "$root_arg" in
		PARTUUID=*) source="/dev/disk/by-partuuid/${root_arg#PARTUUID=}" ;;
		UUID=*) source="/dev/disk/by-uuid/${root_arg#UUID=}" ;;
		/dev/*) source="$root_arg" ;;
		esac
	fi
	basename "$(readlink -f -- "$source")"
}

# _disk_names: the disk itself and each of its partitions.
_disk_names() {
	local part
	printf '%s\n' "$DISK"
	for part in "$DISK_SYS"/*/partition; do
		[[ -e "$part" ]] && basename "$(dirname "$part")"
	done
	return 0
}

_is_system_mount() {
	local mount="$1" candidate
	for candidate in "${SYSTEM_MOUNTS[@]}"; do
		[[ "$mount" == "$candidate" ]] && return 0
	done
	return 1
}

check_device() {
	local real names name source mount _rest mounted=() holder
	real="$(readlink -f -- "$DEVICE")" || real="$DEVICE"
	[[ -b "$real" || -f "$real" ]] || die "${DEVICE} is not a block device; give the SD card's disk, e.g. /dev/sdb (see lsblk)"
	[[ -w "$real" || "$DRY_RUN" == 1 ]] || die "cannot write ${DEVICE}; run with sudo"
	DISK="$(basename "$real")"
	DISK_SYS="${SYSFS_ROOT}/block/${DISK}"
	[[ -d "$DISK_SYS" ]] ||
		die "${DEVICE} is not a whole disk (${DISK_SYS} does not exist); give the disk (e.g. /dev/sdb), not a partition (/dev/sdb1)"
	mapfile -t names < <(_disk_names)

	while read -r source mount _rest; do
		[[ "$source" == /dev/* ]] || continue
		if printf '%s\n' "${names[@]}" | grep -qxF -- "$(_source_name "$source")"; then
			mount="$(printf '%b' "$mount")" # /proc/mounts escapes spaces as \040
			_is_system_mount "$mount" &&
				die "REFUSED: ${DEVICE} holds ${mount} of the running system (${source}); this is the disk the system runs from, not an SD card"
			mounted+=("${source} on ${mount}")
		fi
	done <"$MOUNTS_FILE"
	if [[ -r "$SWAPS_FILE" ]]; then
		while read -r source _rest; do
			if [[ "$source" == /dev/* ]] && printf '%s\n' "${names[@]}" | grep -qxF -- "$(_source_name "$source")"; then
				die "REFUSED: ${source} on ${DEVICE} is in use as swap; this looks like a system disk"
			fi
		done < <(tail -n +2 "$SWAPS_FILE")
	fi
	if ((${#mounted[@]})); then
		die "REFUSED: ${DEVICE} is mounted (${mounted[*]}). Unmount it first (sudo umount <each partition>), then run again"
	fi
	for name in "${names[@]}"; do
		for holder in "$DISK_SYS"/holders/* "$DISK_SYS/$name"/holders/*; do
			[[ -e "$holder" ]] && die "REFUSED: ${name} on ${DEVICE} is in use by $(basename "$holder") (LVM, LUKS or RAID); this is not a free SD card"
		done
	done
	[[ "$(cat "${DISK_SYS}/ro" 2>/dev/null || echo 0)" == 0 ]] ||
		die "REFUSED: ${DEVICE} is write-protected; slide the card's lock switch up and insert it again"

	DISK_SIZE=$(($(cat "${DISK_SYS}/size") * 512))
	DISK_MODEL="$(cat "${DISK_SYS}/device/model" 2>/dev/null || cat "${DISK_SYS}/device/name" 2>/dev/null || echo unknown)"
	DISK_MODEL="${DISK_MODEL%"${DISK_MODEL##*[![:space:]]}"}"
	if [[ "$(cat "${DISK_SYS}/removable" 2>/dev/null || echo 0)" == 1 ]]; then
		DISK_REMOVABLE=1
	elif [[ "$DISK" == mmcblk* && "$(cat "${DISK_SYS}/device/type" 2>/dev/null)" == SD ]]; then
		DISK_REMOVABLE=1 # built-in SD slots report removable=0 but the card is an SD card
	fi
	((DISK_SIZE > 0)) || die "REFUSED: ${DEVICE} has size 0; is a card in the reader?"
	if ((DISK_REMOVABLE == 0)); then
		((FORCE == 1)) || die "REFUSED: ${DEVICE} (${DISK_MODEL}) is not a removable disk; if you are sure it is the SD card, add --force"
		warn "${DEVICE} is not removable; continuing because of --force"
	fi
	((IMAGE_SIZE <= DISK_SIZE)) ||
		die "REFUSED: the image (${IMAGE_SIZE} bytes) is larger than ${DEVICE} (${DISK_SIZE} bytes); use a bigger card"
}

_human() { awk -v b="$1" 'BEGIN { printf "%.1f GB", b / 1e9 }'; }

confirm_erase() {
	cat >&2 <<SUMMARY
About to ERASE everything on ${DEVICE}:
  model:     ${DISK_MODEL}
  size:      $(_human "$DISK_SIZE") (${DISK_SIZE} bytes)
  removable: $([[ "$DISK_REMOVABLE" == 1 ]] && echo yes || echo 'NO (--force)')
  image:     ${IMAGE} ($(_human "$IMAGE_SIZE") raw)
SUMMARY
	if [[ "$DRY_RUN" == 1 ]]; then
		log "dry run: nothing written"
		return 0
	fi
	if [[ "$ASSUME_YES" == 1 ]]; then
		log "confirmed by --yes"
		return 0
	fi
	confirm "Type the disk's name '${DISK}' to erase it:" "$DISK"
}

# write_image: decompress once, writing to the card and hashing the same bytes (IMAGE_SHA) for
# the read-back check.
write_image() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would run: stream ${IMAGE} | tee >(sha256sum) | dd of=${DEVICE} bs=4M conv=fsync,notrunc"
		return 0
	fi
	local progress=none sha_file
	[[ -t 2 ]] && progress=progress
	sha_file="$(mktemp)"
	cleanup_on_exit "$sha_file"
	stream_image | tee >(sha256sum | cut -d' ' -f1 >"$sha_file") |
		dd of="$DEVICE" bs=4M iflag=fullblock conv=fsync,notrunc status="$progress"
	wait "$!" # the hashing process substitution
	IMAGE_SHA="$(<"$sha_file")"
	[[ "$IMAGE_SHA" =~ ^[0-9a-f]{64}$ ]] || die "could not hash the image while writing it; run again"
	log "written and synced; the image's sha256 is ${IMAGE_SHA}"
}

verify_device() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would read back ${IMAGE_SIZE} bytes and compare them with the sha256 of what was written"
		return 0
	fi
	if [[ -b "$DEVICE" ]]; then
		need blockdev
		blockdev --flushbufs "$DEVICE" # read the card itself, not the page cache
	fi
	local actual
	actual="$(head -c "$IMAGE_SIZE" -- "$DEVICE" | sha256sum | cut -d' ' -f1)"
	[[ "$actual" == "$IMAGE_SHA" ]] ||
		die "VERIFY FAILED: ${DEVICE} reads back sha256 ${actual}, expected ${IMAGE_SHA}. The card may be faulty or fake; try another card."
	log "verified: ${DEVICE} reads back sha256 ${IMAGE_SHA}. You can remove the card."
}

main() {
	init_common
	parse_args "$@"
	open_log "${XDG_STATE_HOME:-${HOME:-/root}/.local/state}/pneumoedge/flash-sd.log"
	step 01 "Check prerequisites" check_prerequisites
	step 02 "Check the image" check_image
	step 03 "Check the target disk" check_device
	step 04 "Confirm" confirm_erase
	step 05 "Write the image" write_image
	step 06 "Read back and verify" verify_device
}

main "$@"
