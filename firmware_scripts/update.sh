#!/usr/bin/env bash
# Update a provisioned PneumoEdge device from a newer offline bundle: verify it, install it
# beside the running release, switch `current` atomically, restart, health-check the kiosk,
# and roll back by itself when the new release does not come up healthy.
set -Eeuo pipefail
SCRIPT_NAME=update
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/release.sh
source "${FIRMWARE_DIR}/lib/release.sh"

usage() {
	cat <<USAGE
Usage: sudo $0 [options] BUNDLE.tar.gz

Run it from the installed release (it verifies the new bundle with the code you already trust):
  sudo /opt/pneumoedge/current/firmware_scripts/update.sh /media/usb/pneumoedge-<version>-<target>.tar.gz

Steps: 01 check the device, 02 verify the bundle (checksums; stops on any mismatch),
03 install it beside the current release (own venv, model verified), 04 switch \`current\`
in one rename, 05 restart and health-check (/healthz must serve the new model's sha256 within
HEALTH_TIMEOUT_SEC), else roll back to the previous release and check that it serves again,
06 remove releases beyond KEEP_RELEASES (never the current or the previous one).
Running it again with the same bundle changes nothing.

Options:
  --config FILE   config file (default: /etc/pneumoedge/pneumoedge.conf)
  --root DIR      operate on a tree under DIR (rehearsals, tests): the restart is reported, not
                  run, so the health check is skipped
  --dry-run       verify the bundle and print what would be done; change nothing
  -h, --help      show this help

Roll back by hand: sudo $0 --rollback   (points current at the previous release and restarts)
Log: LOG_DIR/update.log, by default /var/log/pneumoedge/update.log
USAGE
}

TARBALL=""
CONFIG_ARG=""
MODE=update

parse_args() {
	while (($#)); do
		case "$1" in
		--config) CONFIG_ARG="${2:?--config needs a file}" && shift ;;
		--root) ROOT_DIR="$(realpath -m "${2:?--root needs a directory}")" && shift ;;
		--rollback) MODE=rollback ;;
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
	[[ "$MODE" == rollback || -n "$TARBALL" ]] || die "no bundle given; usage: $0 [options] BUNDLE.tar.gz (see --help)"
}

OLD_VERSION=""
OLD_PREVIOUS=""

check_device() {
	local prefix
	prefix="$(prefix_dir)"
	need tar sha256sum install find sort comm cmp mktemp realpath uname flock
	[[ -L "${prefix}/current" ]] ||
		die "${prefix}/current does not exist: this device is not provisioned. Run provision.sh first."
	[[ -w "$prefix" || "$DRY_RUN" == 1 ]] || die "${prefix} is not writable; run as root (sudo)"
	if [[ -z "$ROOT_DIR" ]] && grep -qw 'overlayroot=tmpfs' "${CMDLINE_FILE:-/proc/cmdline}" 2>/dev/null; then
		die "the root file system is read-only (overlay): an update would vanish at reboot. Run 'sudo raspi-config nonint do_overlayfs 1', reboot, update, then 'sudo raspi-config nonint do_overlayfs 0' and reboot."
	fi
	if [[ "$DRY_RUN" != 1 ]]; then
		exec 9>"${prefix}/.update.lock"
		flock -n 9 || die "another update is running (lock ${prefix}/.update.lock); wait for it to finish"
	fi
	OLD_VERSION="$(current_version)"
	OLD_PREVIOUS="$(basename "$(readlink "${prefix}/previous" 2>/dev/null || true)")"
	log "running release: ${OLD_VERSION}"
}

verify_bundle() {
	stage_bundle "$TARBALL"
	check_compatible
}

NEW_WAS_INSTALLED=0

install_side_by_side() {
	[[ ! -f "$(release_dir "$BUNDLE_VERSION")/.installed" ]] || NEW_WAS_INSTALLED=1
	install_release
}

# restart_and_check SHA256: restart the app and wait for /healthz to serve SHA256. Called in an
# `if`, so every failure is returned explicitly.
restart_and_check() {
	# 9>&-: whatever the restart spawns must not inherit (and so hold) the update lock.
	run_system systemctl restart pneumoedge.service 9>&- || return 1
	if [[ -n "$ROOT_DIR" || "$DRY_RUN" == 1 ]]; then
		log "health check skipped: nothing was restarted (--root or --dry-run)"
		return 0
	fi
	check_health "$1" || return 1
	run_system systemctl try-restart pneumoedge-kiosk.service 9>&- || warn "the kiosk screen did not restart; it reloads at the next boot"
}

# roll_back_to VERSION: point current at VERSION again and prove it serves.
roll_back_to() {
	local version="$1" sha
	warn "rolling back to release ${version}"
	switch_link current "$version"
	sha="$(manifest_get "$(release_dir "$version")/MANIFEST" model_sha256)"
	if ! restart_and_check "$sha"; then
		die "ROLLBACK FAILED: release ${version} is not healthy either. See 'journalctl -u pneumoedge.service'; reprovision with a known-good bundle."
	fi
	log "release ${version} is serving again"
}

switch_and_check() {
	if [[ "$BUNDLE_VERSION" == "$OLD_VERSION" ]]; then
		log "release ${BUNDLE_VERSION} is already the current one; nothing to switch"
		return 0
	fi
	switch_link previous "$OLD_VERSION"
	switch_link current "$BUNDLE_VERSION"
	if restart_and_check "$BUNDLE_MODEL_SHA256"; then
		if [[ -n "$ROOT_DIR" || "$DRY_RUN" == 1 ]]; then
			log "switched to ${BUNDLE_VERSION} without a health check; ${OLD_VERSION} is kept as the previous release"
		else
			log "release ${BUNDLE_VERSION} is healthy; ${OLD_VERSION} is kept as the previous release"
		fi
		return 0
	fi
	roll_back_to "$OLD_VERSION"
	if [[ -n "$OLD_PREVIOUS" ]]; then switch_link previous "$OLD_PREVIOUS"; else run rm -f -- "$(prefix_dir)/previous"; fi
	if [[ "$NEW_WAS_INSTALLED" == 0 ]]; then
		run rm -rf -- "$(release_dir "$BUNDLE_VERSION")"
		log "removed the failed release ${BUNDLE_VERSION}"
	fi
	die "the update to ${BUNDLE_VERSION} failed its health check and was rolled back; ${OLD_VERSION} is serving. See 'journalctl -u pneumoedge.service' for why the new release did not start."
}

manual_rollback() {
	local prefix previous
	prefix="$(prefix_dir)"
	previous="$(basename "$(readlink "${prefix}/previous" 2>/dev/null || true)")"
	[[ -n "$previous" && -f "$(release_dir "$previous")/.installed" ]] ||
		die "there is no previous release to roll back to (${prefix}/previous is missing)"
	switch_link previous "$OLD_VERSION"
	roll_back_to "$previous"
}

main() {
	init_common
	parse_args "$@"
	load_config "$CONFIG_ARG"
	open_log "${ROOT_DIR}${LOG_DIR}/update.log"
	step 01 "Check the device" check_device
	if [[ "$MODE" == rollback ]]; then
		step 02 "Roll back to the previous release" manual_rollback
		return 0
	fi
	log "updating from ${TARBALL}$([[ "$DRY_RUN" == 1 ]] && echo ' (dry run)')"
	step 02 "Verify the bundle" verify_bundle
	step 03 "Install beside the current release" install_side_by_side
	step 04 "Switch, restart and health-check" switch_and_check
	step 05 "Remove old releases" prune_releases
	log "done: release ${BUNDLE_VERSION} with model ${BUNDLE_MODEL} is current"
}

main "$@"
