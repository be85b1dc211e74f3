#!/usr/bin/env bash
# Update a provisioned PneumoEdge device from a newer signed offline bundle: check its signature,
# install it beside the running release, switch `current` atomically, restart, health-check the
# kiosk, and roll back when the new release does not come up healthy, also after a power cut.
set -Eeuo pipefail
SCRIPT_NAME=update
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/signing.sh
source "${FIRMWARE_DIR}/lib/signing.sh"
# shellcheck source=lib/release.sh
source "${FIRMWARE_DIR}/lib/release.sh"

usage() {
	cat <<USAGE
Usage: sudo $0 [options] BUNDLE.tar.gz

Run the device's stable updater (the scripts of the last release that passed its health check;
it verifies the new bundle with code that has already proven itself), with the bundle's .sha256
and .sig files next to it:
  sudo /opt/pneumoedge/updater/update.sh /media/usb/pneumoedge-<version>-<target>.tar.gz

Steps: 01 check the device, 02 finish an interrupted update (an update whose health check a power
cut or a crash interrupted is checked again: kept if healthy, else rolled back), 03 verify the
bundle (its Ed25519 signature against the device's trusted key, then every checksum; the clock
must be after the bundle's build time; a bundle older than the running release is refused
unless --reinstall), 04 install it beside the current
release (own venv, model verified; it must fit in the free space), 05 snapshot the records
database (SQLite online backup), write the pending-update marker, switch \`current\` in one
rename, restart and health-check (/healthz must serve the new model's sha256 within
HEALTH_TIMEOUT_SEC; it gives up at once if the app exits; then the kiosk screen SCREEN_UNIT must
keep running for SCREEN_SETTLE_SEC), else roll back to the previous
release (restoring the database snapshot if the new release changed the schema) and check that
it serves again,
06 remove releases beyond KEEP_RELEASES (never the current or the previous one). A release that
passes its check becomes the stable updater (INSTALL_PREFIX/updater).
Running it again with the same bundle changes nothing.

Options:
  --config FILE   config file (default: /etc/pneumoedge/pneumoedge.conf)
  --reinstall     accept a bundle older than the running release (a deliberate downgrade)
  --rollback      instead of updating: go back to the previous release, if it passed its last
                  health check, like an update (snapshot, pending marker, health check); if the
                  previous release fails its check, the running one is restored. Once it passed,
                  the release left is never rolled back to again
  --resume        only step 02 (run at boot by pneumoedge-health.service)
  --root DIR      operate on a tree under DIR (rehearsals, tests): the restart is reported, not
                  run, so the health check is skipped
  --dry-run       verify the bundle and print what would be done; change nothing
  -h, --help      show this help

Log: LOG_DIR/update.log, by default /var/log/pneumoedge/update.log
USAGE
}

TARBALL=""
CONFIG_ARG=""
MODE=update
REINSTALL=0

parse_args() {
	while (($#)); do
		case "$1" in
		--config) CONFIG_ARG="${2:?--config needs a file}" && shift ;;
		--root) ROOT_DIR="$(realpath -m "${2:?--root needs a directory}")" && shift ;;
		--rollback) MODE=rollback ;;
		--resume) MODE=resume ;;
		--reinstall) REINSTALL=1 ;;
		--dry-run) DRY_RUN=1 ;;
		-h | --help) usage && exit 0 ;;
		-*) die "unknown option $1; see $0 --help" ;;
		*)
			[[ -z "$TARBALL" ]] || die "only one bundle may be given (got ${TARBALL} and $1)"
			TARBALL="$1"
			;;
		esac
		shift
	done
	if [[ "$ROOT_DIR" == / ]]; then ROOT_DIR=""; fi
	[[ "$MODE" != update || -n "$TARBALL" ]] || die "no bundle given; usage: $0 [options] BUNDLE.tar.gz (see --help)"
}

OLD_VERSION=""
OLD_PREVIOUS=""

# fs_type_of PATH: the type of the file system PATH is on (the longest mount point above it in
# MOUNTS_FILE, /proc/self/mounts by default): "overlay" under Raspberry Pi OS's read-only root.
fs_type_of() {
	local path="$1" source mount type _rest best="" best_type=""
	while read -r source mount type _rest; do
		if [[ "$path" == "$mount" || "$path" == "${mount%/}/"* ]] && ((${#mount} >= ${#best})); then
			best="$mount" best_type="$type"
		fi
	done <"${MOUNTS_FILE:-/proc/self/mounts}"
	printf '%s' "$best_type"
}

check_device() {
	local prefix
	prefix="$(prefix_dir)"
	need tar sha256sum install find sort comm cmp mktemp realpath uname flock openssl sync du df awk
	[[ -L "${prefix}/current" ]] ||
		die "${prefix}/current does not exist: this device is not provisioned. Run provision.sh first."
	[[ -w "$prefix" || "$DRY_RUN" == 1 ]] || die "${prefix} is not writable; run as root (sudo)"
	if [[ -z "$ROOT_DIR" ]] && grep -qw 'overlayroot=tmpfs' "${CMDLINE_FILE:-/proc/cmdline}" 2>/dev/null &&
		[[ "$(fs_type_of "$prefix")" == overlay ]]; then
		die "${prefix} is on the read-only root's overlay (in RAM): an update would vanish at reboot. Provision with DATA_MOUNT so the releases live on the data partition (docs/deployment.md, 'Read-only root'), or turn the overlay off for the update: 'sudo raspi-config nonint do_overlayfs 1', reboot, update, 'sudo raspi-config nonint do_overlayfs 0', reboot."
	fi
	take_update_lock
}

verify_bundle() {
	local pubkey="${ROOT_DIR}${TRUSTED_PUBKEY}"
	[[ -f "$pubkey" ]] ||
		die "this device trusts no signing key (${pubkey} is missing); run provision.sh --pubkey FILE once with the office's public key (see docs/deployment.md)"
	stage_bundle "$TARBALL" "$pubkey"
	check_compatible
	check_clock
	check_version "$OLD_VERSION" "$REINSTALL"
	check_free_space
}

NEW_WAS_INSTALLED=0

install_side_by_side() {
	[[ ! -f "$(release_dir "$BUNDLE_VERSION")/.installed" ]] || NEW_WAS_INSTALLED=1
	install_release
}

switch_and_check() {
	if [[ "$BUNDLE_VERSION" == "$OLD_VERSION" ]]; then
		log "release ${BUNDLE_VERSION} is already the current one; nothing to switch"
		return 0
	fi
	begin_switch update "$BUNDLE_VERSION"
	if settle_switch update "$BUNDLE_VERSION" "$OLD_VERSION" "$OLD_PREVIOUS"; then
		log "${OLD_VERSION} is kept as the previous release"
		return 0
	fi
	if [[ "$NEW_WAS_INSTALLED" == 0 ]]; then
		run rm -rf -- "$(release_dir "$BUNDLE_VERSION")"
		log "removed the failed release ${BUNDLE_VERSION}"
	fi
	die "the update to ${BUNDLE_VERSION} failed its health check and was rolled back; ${OLD_VERSION} is serving. See 'journalctl -u pneumoedge.service' for why the new release did not start."
}

# manual_rollback: go back to the previous release, only if it passed its last health check, like
# an update: snapshot, pending marker, health check. The release left keeps its healthy mark until
# the target passed its check (then it loses it, so a second --rollback never returns to it); a
# target that fails is rolled back from, to the release left.
manual_rollback() {
	local previous
	previous="$(link_version previous)"
	[[ -n "$previous" && "$previous" != "$OLD_VERSION" && -f "$(release_dir "$previous")/.installed" ]] ||
		die "there is no previous release to roll back to; nothing was changed"
	is_healthy "$previous" ||
		die "the previous release ${previous} has not passed a health check since it was last switched to; refusing to go back to it. Install a known-good bundle with update.sh instead. Nothing was changed."
	begin_switch rollback "$previous"
	settle_switch rollback "$previous" "$OLD_VERSION" "$previous" ||
		die "the rollback to ${previous} failed its health check; ${OLD_VERSION} is serving again. See 'journalctl -u pneumoedge.service -u pneumoedge-kiosk.service' for why ${previous} did not start."
	log "rolled back to ${previous}; ${OLD_VERSION} is no longer a rollback target"
}

main() {
	init_common
	parse_args "$@"
	load_config "$CONFIG_ARG"
	open_log "${ROOT_DIR}${LOG_DIR}/update.log"
	step 01 "Check the device" check_device
	step 02 "Finish an interrupted update" resume_pending
	OLD_VERSION="$(current_version)"
	OLD_PREVIOUS="$(link_version previous)"
	log "running release: ${OLD_VERSION}"
	case "$MODE" in
	resume) return 0 ;;
	rollback)
		step 03 "Roll back to the previous release" manual_rollback
		return 0
		;;
	esac
	log "updating from ${TARBALL}$([[ "$DRY_RUN" == 1 ]] && echo ' (dry run)')"
	step 03 "Verify the bundle" verify_bundle
	step 04 "Install beside the current release" install_side_by_side
	step 05 "Switch, restart and health-check" switch_and_check
	step 06 "Remove old releases" prune_releases
	log "done: release ${BUNDLE_VERSION} with model ${BUNDLE_MODEL} is current"
}

main "$@"
