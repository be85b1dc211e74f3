#!/usr/bin/env bash
# Build a ready-to-flash PneumoEdge image from a Raspberry Pi OS image the technician downloaded:
# grow its root, add the data partition, and provision the kiosk inside it (in a chroot), so a
# flashed card boots straight into the kiosk after asking for the clinic's name and access code.
set -Eeuo pipefail
SCRIPT_NAME=build-image
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# This checkout's own signature code: nothing from the bundle runs before its signature holds.
# shellcheck source=lib/signing.sh
source "${FIRMWARE_DIR}/lib/signing.sh"
# shellcheck source=lib/release.sh
source "${FIRMWARE_DIR}/lib/release.sh"

usage() {
	cat <<USAGE
Usage: sudo $0 [options] --base RASPIOS.img[.xz] --bundle BUNDLE.tar.gz --pubkey KEY.pub --output OUT.img

Customise a downloaded Raspberry Pi OS image (no network needed): copy it to OUT.img, grow its
root partition by --root-grow, add an ext4 data partition (label PNEUMODATA, --data-size) after
it, then run provision.sh --image inside the image (chroot; an arm64 image on an x86 laptop needs
qemu-user-static and binfmt-support) with the bundle and the office's public key: users, the
release and its venv, the hardened units, the first-boot setup, the releases and records on the
data partition (DATA_MOUNT=/srv/pneumoedge). Sets the time zone. Flash OUT.img with flash-sd.sh.

The bundle's signature is checked first, with --pubkey and this checkout's own code, on a copy
of the bundle; everything later (the files put in the image, the provision.sh run inside it) comes
from that verified copy. A bundle that fails the check is refused before any of it is unpacked.

Steps: 01 check prerequisites (and the bundle's signature), 02 copy the base image, 03 partitions, 04 mount,
05 provision inside the image, 06 time zone and technician login, 07 unmount and checksum.

Options:
  --base FILE         the Raspberry Pi OS image (.img or .img.xz), checked with --base-sha256
  --base-sha256 HEX   its published sha256 (recommended)
  --bundle FILE       the signed bundle (.tar.gz with .sha256 and .sig next to it)
  --pubkey FILE       the office's Ed25519 public key (the devices will trust it)
  --output FILE       the image to write (must not exist)
  --userconf FILE     the technician's login, one line NAME:HASH (HASH from 'openssl passwd -6'):
                      written as the boot partition's userconf.txt, so Raspberry Pi OS makes the
                      account at first boot without its own setup wizard (required)
  --timezone ZONE     e.g. Africa/Nairobi (default: UTC)
  --root-grow SIZE    room added to the root partition (default: 1G)
  --data-size SIZE    the data partition for records and releases (default: 4G)
  --host-provision    provision from this machine into the mounted image (--root, no chroot): no
                      users are made and the venv uses this machine's Python; for rehearsals and
                      tests with an image of this machine's own CPU only
  --dry-run           check the inputs and say what would be done
  -h, --help          show this help

Needs root, losetup, mount, sfdisk, e2fsck, resize2fs, mkfs.ext4, chroot.
Log: next to the output, OUT.img.log
USAGE
}

BASE=""
BASE_SHA256=""
BUNDLE=""
PUBKEY=""
OUTPUT=""
USERCONF=""
TIMEZONE=UTC
ROOT_GROW=1G
DATA_SIZE=4G
HOST_PROVISION=0
DATA_LABEL=PNEUMODATA
IMAGE_DATA_MOUNT=/srv/pneumoedge

parse_args() {
	while (($#)); do
		case "$1" in
		--base) BASE="${2:?--base needs a file}" && shift ;;
		--base-sha256) BASE_SHA256="${2:?--base-sha256 needs a hex digest}" && shift ;;
		--bundle) BUNDLE="${2:?--bundle needs a file}" && shift ;;
		--pubkey) PUBKEY="${2:?--pubkey needs a file}" && shift ;;
		--output) OUTPUT="${2:?--output needs a file}" && shift ;;
		--userconf) USERCONF="${2:?--userconf needs a file}" && shift ;;
		--timezone) TIMEZONE="${2:?--timezone needs a zone}" && shift ;;
		--root-grow) ROOT_GROW="${2:?--root-grow needs a size}" && shift ;;
		--data-size) DATA_SIZE="${2:?--data-size needs a size}" && shift ;;
		--host-provision) HOST_PROVISION=1 ;;
		--dry-run) DRY_RUN=1 ;;
		-h | --help) usage && exit 0 ;;
		*) die "unknown argument $1; see $0 --help" ;;
		esac
		shift
	done
	[[ -n "$BASE" && -n "$BUNDLE" && -n "$PUBKEY" && -n "$OUTPUT" && -n "$USERCONF" ]] ||
		die "--base, --bundle, --pubkey, --userconf and --output are required; see $0 --help"
}

# bytes SIZE: 512M, 4G or a plain number of bytes, in bytes.
bytes() { numfmt --from=iec "$1" 2>/dev/null || die "'$1' is not a size like 512M or 4G"; }

# The verified copy of the bundle (verify_bundle_copy): the only bundle file used after step 01.
VERIFIED=""

# verify_bundle_copy: copy the bundle with its .sha256 and .sig to a scratch folder and check, with
# this checkout's lib/signing.sh, that the copy is signed by PUBKEY and holds only plain files under
# relative paths. Runs before the root check, so even a rehearsal never unpacks an unverified bundle.
verify_bundle_copy() {
	local scratch
	[[ -f "$BUNDLE" ]] || die "bundle ${BUNDLE} does not exist; build it with build-bundle.sh"
	[[ -f "$PUBKEY" ]] || die "public key ${PUBKEY} does not exist"
	need openssl sha256sum tar
	is_ed25519_pubkey "$PUBKEY" || die "--pubkey ${PUBKEY} is not an Ed25519 public key (PEM)"
	scratch="$(mktemp -d "${TMPDIR:-/var/tmp}/pneumoedge-verify.XXXXXX")"
	cleanup_on_exit "$scratch"
	verify_signed_copy "$BUNDLE" "$PUBKEY" "$scratch"
	check_tar_members "${scratch}/bundle.tar.gz" "$BUNDLE"
	VERIFIED="$scratch"
}

check_prerequisites() {
	verify_bundle_copy
	[[ "$(id -u)" == 0 || "$DRY_RUN" == 1 ]] || die "this must run as root (sudo): it attaches loop devices and mounts the image"
	need losetup mount umount sfdisk e2fsck resize2fs mkfs.ext4 chroot truncate numfmt sha256sum tar xz
	[[ -f "$BASE" ]] || die "base image ${BASE} does not exist; download Raspberry Pi OS (see docs/deployment.md)"
	[[ -f "$USERCONF" && "$(head -n1 "$USERCONF")" =~ ^[a-z_][a-z0-9_-]*:\$[0-9a-z]+\$ ]] ||
		die "--userconf ${USERCONF} must hold one line NAME:HASH, e.g. made with: echo \"tech:\$(openssl passwd -6)\" > userconf.txt"
	[[ ! -e "$OUTPUT" ]] || die "${OUTPUT} exists already; remove it or choose another --output"
	[[ -z "$TIMEZONE" || "$TIMEZONE" =~ ^[A-Za-z0-9_+/-]+$ ]] || die "--timezone '${TIMEZONE}' is not a zone name like Africa/Nairobi"
	ROOT_GROW="$(bytes "$ROOT_GROW")"
	DATA_SIZE="$(bytes "$DATA_SIZE")"
	if [[ -n "$BASE_SHA256" ]]; then
		[[ "$(sha256sum -- "$BASE" | cut -d' ' -f1)" == "${BASE_SHA256,,}" ]] ||
			die "${BASE} does not match --base-sha256: the download is damaged; download it again"
		log "base image matches its published sha256"
	fi
}

copy_base() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would copy ${BASE} to ${OUTPUT}"
		return 0
	fi
	cleanup_on_exit "$OUTPUT" # until the image is complete
	case "$BASE" in
	*.xz) xz -dc -- "$BASE" >"$OUTPUT" ;;
	*) cp -- "$BASE" "$OUTPUT" ;;
	esac
}

# part_field N FIELD: start or size (sectors) of partition N of the output image.
part_field() {
	sfdisk --json -- "$OUTPUT" | python3 -c \
		'import json, sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1]) - 1][sys.argv[2]])' "$1" "$2"
}

# Raspberry Pi OS: partition 1 is the FAT boot partition, 2 the root. Root grows by ROOT_GROW and
# the data partition follows it, so root is no longer the last partition and the OS's first-boot
# resize leaves the layout alone.
partition() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would grow partition 2 by ${ROOT_GROW} bytes and add partition 3 (${DATA_SIZE} bytes, ext4 ${DATA_LABEL})"
		return 0
	fi
	local count root_end data_start data_sectors
	count="$(sfdisk --json -- "$OUTPUT" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["partitiontable"]["partitions"]))')"
	[[ "$count" == 2 ]] || die "${BASE} has ${count} partitions; a Raspberry Pi OS image has 2 (boot, root)"
	data_sectors=$((DATA_SIZE / 512))
	root_end=$(($(part_field 2 start) + $(part_field 2 size) + ROOT_GROW / 512))
	data_start=$(((root_end + 2047) / 2048 * 2048))
	truncate -s $(((data_start + data_sectors) * 512)) -- "$OUTPUT"
	echo ",+$((ROOT_GROW / 512))" | sfdisk --quiet --no-reread -N 2 -- "$OUTPUT"
	echo "start=${data_start}, size=${data_sectors}, type=83" | sfdisk --quiet --no-reread --append -- "$OUTPUT"
	log "partitions: boot, root (+${ROOT_GROW} bytes), data ${DATA_LABEL} (${DATA_SIZE} bytes)"
}

MNT=""
LOOPS=()

# attach N VAR: a loop device for partition N into VAR (by offset: no partition scanning, so it
# works in containers); remembered for detach_all.
attach() {
	local device
	device="$(losetup --find --show --offset $(($(part_field "$1" start) * 512)) \
		--sizelimit $(($(part_field "$1" size) * 512)) -- "$OUTPUT")"
	LOOPS+=("$device")
	printf -v "$2" '%s' "$device"
}

detach_all() {
	local mount loop
	if [[ -n "$MNT" ]]; then
		for mount in dev/pts dev proc sys "${IMAGE_DATA_MOUNT#/}" boot/firmware ""; do
			mountpoint -q "${MNT}/${mount}" 2>/dev/null && umount "${MNT}/${mount}"
		done
		rmdir "$MNT" 2>/dev/null || true
		MNT=""
	fi
	for loop in "${LOOPS[@]}"; do losetup -d "$loop" 2>/dev/null || true; done
	LOOPS=()
}

mount_image() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would attach the partitions, grow the root file system, make the data file system and mount them"
		return 0
	fi
	local boot root data
	trap 'detach_all; _on_exit' EXIT
	attach 1 boot
	attach 2 root
	attach 3 data
	e2fsck -fy "$root" >&2 || (($? < 4)) || die "the root file system of ${BASE} has errors e2fsck cannot fix"
	resize2fs "$root" >&2
	mkfs.ext4 -q -F -L "$DATA_LABEL" "$data"
	MNT="$(mktemp -d "${TMPDIR:-/var/tmp}/pneumoedge-image.XXXXXX")"
	mount "$root" "$MNT"
	mkdir -p "${MNT}/boot/firmware" "${MNT}${IMAGE_DATA_MOUNT}"
	mount "$boot" "${MNT}/boot/firmware"
	mount "$data" "${MNT}${IMAGE_DATA_MOUNT}"
	log "image mounted at ${MNT}"
}

# provision_image: provision.sh --image from the bundle, inside the image, with the releases and
# records on the data partition.
provision_image() {
	local stage=/var/tmp/pneumoedge-image name mount
	name="$(basename "$BUNDLE")"
	local env=(DATA_PARTITION_LABEL="$DATA_LABEL" DATA_MOUNT="$IMAGE_DATA_MOUNT" KIOSK_TIMEZONE="$TIMEZONE")
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would run in the image: ${env[*]} provision.sh --image --pubkey <key> ${name}"
		return 0
	fi
	mkdir -p "${MNT}${stage}"
	# The verified copies, under the bundle's name (provision.sh checks them again inside).
	cp -- "${VERIFIED}/bundle.tar.gz" "${MNT}${stage}/${name}"
	cp -- "${VERIFIED}/bundle.sha256" "${MNT}${stage}/${name}.sha256"
	cp -- "${VERIFIED}/bundle.sig" "${MNT}${stage}/${name}.sig"
	cp -- "$PUBKEY" "${MNT}${stage}/bundle-signing.pub"
	tar -xzf "${VERIFIED}/bundle.tar.gz" -C "${MNT}${stage}" --no-same-owner --wildcards '*/firmware_scripts/*'
	local scripts=("${MNT}${stage}"/*/firmware_scripts/provision.sh)
	if [[ "$HOST_PROVISION" == 1 ]]; then
		env "${env[@]}" "${scripts[0]}" --root "$MNT" --image --pubkey "${MNT}${stage}/bundle-signing.pub" "${MNT}${stage}/${name}"
	else
		for mount in dev dev/pts proc sys; do mount --bind "/${mount}" "${MNT}/${mount}"; done
		chroot "$MNT" env "${env[@]}" "${scripts[0]#"$MNT"}" --image --pubkey "${stage}/bundle-signing.pub" "${stage}/${name}"
	fi
	rm -rf -- "${MNT:?}${stage}"
}

set_timezone() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would set the time zone to ${TIMEZONE} and write userconf.txt"
		return 0
	fi
	install -m 0600 "$USERCONF" "${MNT}/boot/firmware/userconf.txt"
	[[ -f "${MNT}/usr/share/zoneinfo/${TIMEZONE}" ]] || die "the image has no time zone ${TIMEZONE} (/usr/share/zoneinfo)"
	ln -sfn "/usr/share/zoneinfo/${TIMEZONE}" "${MNT}/etc/localtime"
	printf '%s\n' "$TIMEZONE" >"${MNT}/etc/timezone"
	log "time zone ${TIMEZONE}"
}

finish() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would unmount and write ${OUTPUT}.sha256"
		return 0
	fi
	sync
	detach_all
	keep_path "$OUTPUT"
	(cd "$(dirname "$OUTPUT")" && sha256sum "$(basename "$OUTPUT")") >"${OUTPUT}.sha256"
	log "image: ${OUTPUT} ($(du -h "$OUTPUT" | cut -f1)), sha256 $(cut -d' ' -f1 "${OUTPUT}.sha256"). Flash it with flash-sd.sh --sha256-file ${OUTPUT}.sha256"
}

main() {
	init_common
	parse_args "$@"
	load_config
	open_log "${OUTPUT}.log"
	step 01 "Check prerequisites" check_prerequisites
	step 02 "Copy the base image" copy_base
	step 03 "Partitions" partition
	step 04 "Mount" mount_image
	step 05 "Provision inside the image" provision_image
	step 06 "Time zone and technician login" set_timezone
	step 07 "Unmount and checksum" finish
}

main "$@"
