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

Run it from the installed release (it verifies the new bundle with the code you already trust),
with the bundle's .sha256 and .sig files next to it:
  sudo /opt/pneumoedge/current/firmware_scripts/update.sh /media/usb/pneumoedge-<version>-<target>.tar.gz

Steps: 01 check the device, 02 finish an interrupted update (an update whose health check a power
cut or a crash interrupted is checked again: kept if healthy, else rolled back), 03 verify the
bundle (its Ed25519 signature against the device's trusted key, then every checksum; the clock
must be after the bundle's build time; a bundle older than the running release is refused
unless --reinstall), 04 install it beside the current
release (own venv, model verified; it must fit in the free space), 05 snapshot the records
database (SQLite online backup), write the pending-update marker, switch \`current\` in one
rename, restart and health-check (/healthz must serve the new model's sha256 within
HEALTH_TIMEOUT_SEC; it gives up at once if the app exits), else roll back to the previous
release (restoring the database snapshot if the new release changed the schema) and check that
it serves again,
06 remove releases beyond KEEP_RELEASES (never the current or the previous one).
Running it again with the same bundle changes nothing.

Options:
  --config FILE   config file (default: /etc/pneumoedge/pneumoedge.conf)
  --reinstall     accept a bundle older than the running release (a deliberate downgrade)
  --rollback      instead of updating: go back to the previous release, if it passed its last
                  health check; the release left is never rolled back to again
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
	if [[ "$DRY_RUN" != 1 ]]; then
		exec 9>"${prefix}/.update.lock"
		flock -n 9 || die "another update is running (lock ${prefix}/.update.lock); wait for it to finish"
	fi
}

# release_sha256 VERSION: the model sha256 an installed release must serve.
release_sha256() { manifest_get "$(release_dir "$1")/MANIFEST" model_sha256; }

# restore_previous VERSION: point previous at VERSION again, or remove it when there is none.
restore_previous() {
	if [[ -n "$1" && -f "$(release_dir "$1")/.installed" ]]; then switch_link previous "$1"; else drop_link previous; fi
}

# resume_pending: finish an update that was interrupted (power cut, crash, kill) before its health
# check decided: keep the new release if it serves now, else roll back to the one it replaced.
resume_pending() {
	local pending version fallback
	pending="$(pending_file)"
	if [[ ! -f "$pending" ]]; then
		log "no update is waiting for its health check"
		return 0
	fi
	version="$(manifest_get "$pending" version)"
	fallback="$(manifest_get "$pending" fallback)"
	if ! health_checks_run; then
		log "the update to ${version} still waits for its health check; a run on the device finishes it"
		return 0
	fi
	if [[ "$(current_version)" != "$version" ]]; then
		log "the interrupted update to ${version} never switched (current is $(current_version)); nothing to undo"
		clear_pending
		return 0
	fi
	log "the update to ${version} was interrupted before its health check finished; checking it now"
	if restart_and_check "$(release_sha256 "$version")"; then
		mark_healthy "$version"
		clear_pending
		log "release ${version} is healthy; the interrupted update is complete"
		return 0
	fi
	mark_unhealthy "$version" "it failed its health check"
	roll_back_to "$fallback" "$version"
	restore_previous "$(manifest_get "$pending" previous)"
	clear_pending
	die "the interrupted update to ${version} failed its health check and was rolled back; ${fallback} is serving. See 'journalctl -u pneumoedge.service' for why ${version} did not start."
}

# version_older A B: release name A sorts before B (sort -V: 1.9 < 1.10, dates in order).
version_older() {
	local first
	first="$(printf '%s\n%s\n' "$1" "$2" | sort -V)"
	[[ "$1" != "$2" && "${first%%$'\n'*}" == "$1" ]]
}

# check_version: the same release again changes nothing; another bundle with the running
# release's name is always refused (the running release is never replaced in place), and an
# older one only with --reinstall.
check_version() {
	if [[ "$BUNDLE_VERSION" == "$OLD_VERSION" ]]; then
		cmp -s "${STAGED}/SHA256SUMS" "$(release_dir "$OLD_VERSION")/SHA256SUMS" ||
			die "this bundle is named ${BUNDLE_VERSION}, like the running release, but its files differ: build it again with a new --version. Nothing was changed."
	elif version_older "$BUNDLE_VERSION" "$OLD_VERSION"; then
		[[ "$REINSTALL" == 1 ]] ||
			die "release ${BUNDLE_VERSION} is older than the running ${OLD_VERSION}; to go back to it on purpose, run again with --reinstall. Nothing was changed."
		warn "installing ${BUNDLE_VERSION}, older than the running ${OLD_VERSION}, as asked (--reinstall)"
	fi
}

verify_bundle() {
	local pubkey="${ROOT_DIR}${TRUSTED_PUBKEY}"
	[[ -f "$pubkey" ]] ||
		die "this device trusts no signing key (${pubkey} is missing); run provision.sh --pubkey FILE once with the office's public key (see docs/deployment.md)"
	stage_bundle "$TARBALL" "$pubkey"
	check_compatible
	check_clock
	check_version
	check_free_space
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
	if ! health_checks_run; then
		log "health check skipped: nothing was restarted (--root or --dry-run)"
		return 0
	fi
	check_health "$1" || return 1
	run_system systemctl try-restart pneumoedge-kiosk.service 9>&- || warn "the kiosk screen did not restart; it reloads at the next boot"
}

# roll_back_to VERSION LEAVING: point current at VERSION again, with a database it can read, and
# prove it serves.
roll_back_to() {
	local version="$1" leaving="$2"
	warn "rolling back to release ${version}"
	switch_link current "$version"
	run_system systemctl stop pneumoedge.service 9>&- || warn "could not stop the app of ${leaving}"
	restore_db "$version" "$leaving"
	if ! restart_and_check "$(release_sha256 "$version")"; then
		die "ROLLBACK FAILED: release ${version} is not healthy either. See 'journalctl -u pneumoedge.service'; reprovision with a known-good bundle."
	fi
	if health_checks_run; then mark_healthy "$version"; fi
	log "release ${version} is serving again"
}

switch_and_check() {
	if [[ "$BUNDLE_VERSION" == "$OLD_VERSION" ]]; then
		log "release ${BUNDLE_VERSION} is already the current one; nothing to switch"
		return 0
	fi
	snapshot_db "$OLD_VERSION"
	if health_checks_run; then write_pending "$BUNDLE_VERSION" "$OLD_VERSION" "$OLD_PREVIOUS"; fi
	switch_link previous "$OLD_VERSION"
	switch_link current "$BUNDLE_VERSION"
	if restart_and_check "$BUNDLE_MODEL_SHA256"; then
		if health_checks_run; then
			mark_healthy "$BUNDLE_VERSION"
			clear_pending
			log "release ${BUNDLE_VERSION} is healthy; ${OLD_VERSION} is kept as the previous release"
		else
			log "switched to ${BUNDLE_VERSION} without a health check; ${OLD_VERSION} is kept as the previous release"
		fi
		return 0
	fi
	mark_unhealthy "$BUNDLE_VERSION" "it failed its health check"
	roll_back_to "$OLD_VERSION" "$BUNDLE_VERSION"
	restore_previous "$OLD_PREVIOUS"
	clear_pending
	if [[ "$NEW_WAS_INSTALLED" == 0 ]]; then
		run rm -rf -- "$(release_dir "$BUNDLE_VERSION")"
		log "removed the failed release ${BUNDLE_VERSION}"
	fi
	die "the update to ${BUNDLE_VERSION} failed its health check and was rolled back; ${OLD_VERSION} is serving. See 'journalctl -u pneumoedge.service' for why the new release did not start."
}

# manual_rollback: go back to the previous release, only if it passed its last health check. The
# release left behind loses its healthy mark, so a second --rollback never returns to it.
manual_rollback() {
	local previous
	previous="$(link_version previous)"
	[[ -n "$previous" && "$previous" != "$OLD_VERSION" && -f "$(release_dir "$previous")/.installed" ]] ||
		die "there is no previous release to roll back to; nothing was changed"
	is_healthy "$previous" ||
		die "the previous release ${previous} has not passed a health check since it was last switched to; refusing to go back to it. Install a known-good bundle with update.sh instead. Nothing was changed."
	mark_unhealthy "$OLD_VERSION" "rolled back by hand"
	drop_link previous
	roll_back_to "$previous" "$OLD_VERSION"
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
