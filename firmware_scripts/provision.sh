#!/usr/bin/env bash
# Provision a Raspberry Pi (or any Debian machine) as a PneumoEdge kiosk from an offline bundle
# made by build-bundle.sh. No network is used at any point.
set -Eeuo pipefail
SCRIPT_NAME=provision
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/signing.sh
source "${FIRMWARE_DIR}/lib/signing.sh"
# shellcheck source=lib/release.sh
source "${FIRMWARE_DIR}/lib/release.sh"

usage() {
	cat <<USAGE
Usage: sudo $0 [options] BUNDLE.tar.gz

Install a PneumoEdge release on this device from BUNDLE.tar.gz (made by build-bundle.sh),
without network: check its Ed25519 signature (BUNDLE.tar.gz.sig) with the office's public key
and every checksum (any failure stops before anything from the bundle runs),
create the unprivileged users, a venv installed from the bundle's wheels only, the hardened
systemd service with its health watchdog, and the full-screen kiosk on the touchscreen.
Safe to run twice: what is already in place is kept. On a device that already runs a release,
a different bundle is switched to like update.sh does it (update lock, records snapshot,
pending-update marker, health check of the app and the screen, rollback if it fails), and an older
one only with --reinstall.

Steps: 01 check prerequisites, 02 verify the bundle, 03 offline .deb packages (if any),
04 users, 05 data directory, 06 release + venv, 07 config and trusted key, 08 systemd units,
09 read-only root (optional), 10 health check.

Options:
  --pubkey FILE       the office's Ed25519 public key (PEM) to trust, installed as TRUSTED_PUBKEY
                      (/etc/pneumoedge/bundle-signing.pub); needed the first time, later runs
                      use the installed one. Compare the fingerprint it logs with the custody sheet
  --config FILE       config file (default: /etc/pneumoedge/pneumoedge.conf if present,
                      else firmware_scripts/pneumoedge.conf); env variables override it
  --root DIR          install into DIR as if it were / (DESTDIR style, for rehearsals and
                      tests). User creation and systemctl are reported, not run. The venv is
                      built with this machine's DEVICE_PYTHON, so this is not a way to prepare
                      another CPU's image.
  --set-time TIME     set the clock first ('YYYY-MM-DD HH:MM', local time), and the battery
                      clock (RTC) when there is one; needed when the clock is earlier than the
                      bundle's build time (Pi 4 and Zero 2 W have no RTC)
  --no-kiosk          do not install the kiosk screen (headless: the web app only)
  --image             preparing a golden image (build-image.sh runs this in the image's chroot):
                      start nothing and skip the health check; the first boot asks for the
                      clinic's name and access code (pneumoedge-firstboot.service), then the
                      kiosk starts
  --read-only-root    also make the root file system read-only (overlayroot via raspi-config,
                      offline: overlayroot installed or its .debs in the bundle); needs
                      DATA_PARTITION_LABEL and DATA_MOUNT so that records and updates persist
                      on the data partition; takes effect at reboot
  --reinstall         accept a bundle older than the release the device runs (a deliberate downgrade)
  --dry-run           verify the bundle and print what would be done; change nothing
  -h, --help          show this help

Log: LOG_DIR/provision.log, by default /var/log/pneumoedge/provision.log (under --root: inside DIR).
USAGE
}

TARBALL=""
PUBKEY_ARG=""
SET_TIME=""
WITH_KIOSK=1
IMAGE=0
READ_ONLY_ROOT=0
CONFIG_ARG=""
REINSTALL=0

parse_args() {
	while (($#)); do
		case "$1" in
		--config) CONFIG_ARG="${2:?--config needs a file}" && shift ;;
		--root) ROOT_DIR="$(realpath -m "${2:?--root needs a directory}")" && shift ;;
		--pubkey) PUBKEY_ARG="${2:?--pubkey needs a file}" && shift ;;
		--set-time) SET_TIME="${2:?--set-time needs a date and time}" && shift ;;
		--no-kiosk) WITH_KIOSK=0 ;;
		--image) IMAGE=1 ;;
		--read-only-root) READ_ONLY_ROOT=1 ;;
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
	[[ -n "$TARBALL" ]] || die "no bundle given; usage: $0 [options] BUNDLE.tar.gz (see --help)"
	if [[ "$ROOT_DIR" == / ]]; then ROOT_DIR=""; fi
	# An image starts nothing, so nothing is health-checked while it is prepared.
	if [[ "$IMAGE" == 1 ]]; then NO_HEALTH_CHECK=1; fi
}

check_prerequisites() {
	need_root
	need tar sha256sum install find sort comm cmp mktemp realpath uname openssl sync du df awk flock
	if [[ -z "$ROOT_DIR" && "$DRY_RUN" != 1 ]]; then
		need useradd getent systemctl
	fi
	[[ "$READ_ONLY_ROOT" == 0 ]] || check_persistent_layout
	if [[ "$IMAGE" == 1 && "$READ_ONLY_ROOT" == 1 ]]; then
		die "--read-only-root cannot be prepared inside an image (its initramfs is built for the running kernel); run provision.sh --read-only-root on the device after the first boot. Nothing was installed."
	fi
	# A provisioned device: no update may run meanwhile (a first install takes the lock in step 06).
	if [[ -d "$(prefix_dir)" ]]; then take_update_lock; fi
}

# data_mount: where the data partition is mounted: DATA_MOUNT, else DATA_DIR itself.
data_mount() { printf '%s' "${DATA_MOUNT:-$DATA_DIR}"; }

# is_under PATH DIR: PATH is DIR or inside it.
is_under() { [[ "$1" == "$2" || "$1" == "$2"/* ]]; }

# check_persistent_layout: with a read-only root everything that changes after provisioning (the
# records, and the releases an update installs) must be on the persistent data partition.
check_persistent_layout() {
	[[ -n "$DATA_PARTITION_LABEL" ]] ||
		die "--read-only-root needs DATA_PARTITION_LABEL (a persistent ext4 partition for the records and releases), or every record and update would be lost at reboot; see docs/deployment.md, 'Read-only root'. Nothing was installed."
	if ! is_under "$DATA_DIR" "$(data_mount)" || ! is_under "$INSTALL_PREFIX" "$(data_mount)"; then
		die "--read-only-root needs the records (DATA_DIR=${DATA_DIR}) and the releases (INSTALL_PREFIX=${INSTALL_PREFIX}) on the data partition, so that updates persist: set DATA_MOUNT=/srv/pneumoedge (both then default to folders on it). Nothing was installed."
	fi
}

# check_overlay_offline: raspi-config's read-only root is the overlayroot package; without it,
# raspi-config would try to download it (no network) and carry on without an overlay. It must be
# on the image already, or its .deb files in the bundle (build-bundle.sh --debs).
check_overlay_offline() {
	[[ "$READ_ONLY_ROOT" == 1 ]] || return 0
	if [[ -x "${ROOT_DIR}/usr/sbin/overlayroot-chroot" ]]; then
		log "overlayroot is installed: the read-only root needs no download"
	elif compgen -G "${STAGED}/debs/overlayroot_*.deb" >/dev/null; then
		log "overlayroot comes with the bundle's .deb packages (step 03)"
	else
		die "--read-only-root needs the overlayroot package, which this device cannot download: build the bundle with --debs holding overlayroot and its dependencies (docs/deployment.md, 'Read-only root'). Nothing was installed."
	fi
}

PUBKEY=""

# choose_trusted_key: the key the bundle must be signed with: --pubkey, else the installed one.
choose_trusted_key() {
	local installed="${ROOT_DIR}${TRUSTED_PUBKEY}"
	if [[ -n "$PUBKEY_ARG" ]]; then
		is_ed25519_pubkey "$PUBKEY_ARG" ||
			die "--pubkey ${PUBKEY_ARG} is not an Ed25519 public key (PEM); pass the office's public key, e.g. pneumoedge-signing.pub"
		PUBKEY="$PUBKEY_ARG"
		if [[ -f "$installed" ]] && ! cmp -s "$installed" "$PUBKEY"; then
			warn "replacing the trusted key $(key_fingerprint "$installed") with $(key_fingerprint "$PUBKEY")"
		fi
	elif [[ -f "$installed" ]]; then
		PUBKEY="$installed"
	else
		die "no trusted signing key: pass --pubkey FILE with the office's public key (docs/deployment.md, 'Signing keys'); nothing was installed"
	fi
	log "trusted signing key $(key_fingerprint "$PUBKEY"): it must match the fingerprint on the custody sheet"
}

# The screen needs Chromium and a Wayland compositor; they come with the OS image or as .debs
# in the bundle (build-bundle.sh --debs, installed in step 03), since the device has no network.
# Checked before anything is installed; skipped under --root and in a dry run.
check_kiosk_packages() {
	local missing=()
	[[ "$WITH_KIOSK" == 1 && -z "$ROOT_DIR" && "$DRY_RUN" != 1 && ! -d "${STAGED}/debs" ]] || return 0
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
	command -v cage >/dev/null || command -v labwc >/dev/null || missing+=("cage (or labwc)")
	if ((${#missing[@]})); then
		die "the kiosk screen needs: ${missing[*]}. Use Raspberry Pi OS with desktop (it has chromium and labwc), add the .deb files with build-bundle.sh --debs, or pass --no-kiosk"
	fi
}

# set_clock: with --set-time, set the system clock and the RTC (if any); then the clock must be
# after the release's build time.
set_clock() {
	local when
	if [[ -z "$SET_TIME" ]]; then
		check_clock
		return 0
	fi
	when="$(date -d "$SET_TIME" +%s)" || die "--set-time '${SET_TIME}' is not a date; write it as 'YYYY-MM-DD HH:MM'"
	check_clock "$when"
	run_system date -s "@${when}"
	if [[ -e /dev/rtc0 ]]; then
		run_system hwclock --systohc
	elif command -v fake-hwclock >/dev/null; then
		run_system fake-hwclock save
	fi
}

verify_bundle() {
	choose_trusted_key
	stage_bundle "$TARBALL" "$PUBKEY"
	check_version "$(current_version)" "$REINSTALL"
	check_compatible
	set_clock
	check_free_space
	check_kiosk_packages
	check_overlay_offline
}

install_debs() {
	if [[ ! -d "${STAGED}/debs" ]]; then
		log "the bundle has no .deb packages; nothing to do"
		return 0
	fi
	local debs=("${STAGED}"/debs/*.deb)
	log "installing ${#debs[@]} .deb packages from the bundle (no download)"
	run_system apt-get install --yes --no-download --no-install-recommends "${debs[@]}"
}

# ensure_user NAME HOME [GROUP...]: a system user with its own group, no password, no shell.
ensure_user() {
	local name="$1" home="$2" groups=() group
	shift 2
	for group in "$@"; do
		getent group "$group" >/dev/null 2>&1 && groups+=("$group")
	done
	if [[ -z "$ROOT_DIR" ]] && id "$name" >/dev/null 2>&1; then
		log "user ${name} exists"
		return 0
	fi
	local args=(--system --user-group --shell /usr/sbin/nologin --home-dir "$home") joined
	if [[ "$home" == /nonexistent ]]; then args+=(--no-create-home); else args+=(--create-home); fi
	if ((${#groups[@]})); then
		joined="$(printf '%s,' "${groups[@]}")"
		args+=(--groups "${joined%,}")
	fi
	run_system useradd "${args[@]}" "$name"
}

create_users() {
	ensure_user "$SERVICE_USER" /nonexistent
	[[ "$WITH_KIOSK" == 0 ]] || ensure_user "$KIOSK_USER" "/var/lib/${KIOSK_USER}" video render input
}

# The data partition (if any) is mounted first, so the ownership applies to the records' file system.
prepare_data_dir() {
	if [[ -n "$DATA_PARTITION_LABEL" ]]; then
		local unit tmp DATA_MOUNT_POINT DATA_MOUNT_OPTIONS=rw,nosuid,nodev,noatime
		DATA_MOUNT_POINT="$(data_mount)"
		# Records only: nothing on the partition may run. Releases on it must.
		is_under "$INSTALL_PREFIX" "$DATA_MOUNT_POINT" || DATA_MOUNT_OPTIONS+=",noexec"
		need systemd-escape
		unit="$(systemd-escape --path --suffix=mount "$DATA_MOUNT_POINT")"
		tmp="$(mktemp)"
		cleanup_on_exit "$tmp"
		render_template "${STAGED}/firmware_scripts/systemd/data.mount.in" DATA_MOUNT_POINT DATA_MOUNT_OPTIONS \
			DATA_PARTITION_LABEL >"$tmp"
		place_file "$tmp" 0644 "${ROOT_DIR}/etc/systemd/system/${unit}"
		run install -d -m 0755 "${ROOT_DIR}${DATA_MOUNT_POINT}"
		run_system systemctl daemon-reload
		run_system systemctl enable --now "$unit"
		[[ -z "$ROOT_DIR" ]] || enable_units "$unit"
	else
		log "DATA_DIR ${DATA_DIR} stays on the root file system (no DATA_PARTITION_LABEL)"
	fi
	run install -d -m 0750 "${ROOT_DIR}${DATA_DIR}"
	run_system chown "${SERVICE_USER}:${SERVICE_USER}" "${DATA_DIR}"
	run_system chmod 0750 "${DATA_DIR}"
}

# Set when this run switches a device from a release it already ran (step 10 settles the switch).
SWITCHED_FROM=""
SWITCHED_PREVIOUS=""

# install_and_switch: a first install points current at the release; on a device that runs
# another release, the switch is an update's (snapshot, pending marker), checked in step 10.
# The stable updater (INSTALL_PREFIX/updater) is installed if the device has none.
install_and_switch() {
	local before
	take_update_lock
	before="$(current_version)"
	install_release
	if [[ "$before" == "$BUNDLE_VERSION" ]]; then
		log "current already points at ${BUNDLE_VERSION}"
	elif [[ -z "$before" ]]; then
		switch_link current "$BUNDLE_VERSION"
	else
		SWITCHED_FROM="$before"
		SWITCHED_PREVIOUS="$(link_version previous)"
		begin_switch update "$BUNDLE_VERSION"
	fi
	[[ -L "$(prefix_dir)/updater" ]] || install_updater "$BUNDLE_VERSION"
}

write_config() {
	local tmp name installed="${ROOT_DIR}${TRUSTED_PUBKEY}"
	tmp="$(mktemp)"
	cleanup_on_exit "$tmp"
	{
		echo "# shellcheck shell=bash disable=SC2034"
		echo "# Written by provision.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); see firmware_scripts/pneumoedge.conf"
		for name in DATA_PARTITION_LABEL DATA_MOUNT INSTALL_PREFIX DATA_DIR LOG_DIR SERVICE_USER KIOSK_USER APP_HOST APP_PORT \
			KIOSK_TIMEZONE DEVICE_PYTHON WATCHDOG_SEC HW_WATCHDOG_SEC HEALTH_TIMEOUT_SEC START_TIMEOUT_SEC SCREEN_UNIT \
			SCREEN_SETTLE_SEC KEEP_RELEASES KIOSK_COMPOSITOR KIOSK_TTY TRUSTED_PUBKEY; do
			# shellcheck disable=SC2016  # the ${VAR:-default} is meant literally
			printf '%s="${%s:-%s}"\n' "$name" "$name" "${!name}"
		done
	} >"$tmp"
	place_file "$tmp" 0644 "${ROOT_DIR}/etc/pneumoedge/pneumoedge.conf"
	[[ "$PUBKEY" == "$installed" ]] || place_file "$PUBKEY" 0644 "$installed"
}

# enable_units UNIT...: enable units for the boot (all are WantedBy=multi-user.target, the
# default target once raspi-config chose the console boot). Under --root, in the tree itself:
# systemctl --root writes the [Install] symlinks offline, so a prepared image boots into the kiosk.
enable_units() {
	if [[ -z "$ROOT_DIR" ]]; then
		run systemctl enable "$@"
	elif command -v systemctl >/dev/null; then
		run systemctl --root "$ROOT_DIR" enable "$@"
	else
		warn "systemctl is not installed here, so the units are not enabled in ${ROOT_DIR}"
	fi
}

# install_browser_policy SCRATCH: Chromium's managed policy: only the kiosk's own pages, no
# DevTools, no file:// and no downloads. Debian's chromium reads /etc/chromium/policies, Raspberry
# Pi OS's chromium-browser also /etc/chromium-browser/policies; both get the same file.
install_browser_policy() {
	local dir
	render_template "${STAGED}/firmware_scripts/chromium/pneumoedge-policy.json.in" APP_HOST APP_PORT >"${1}/policy.json"
	for dir in /etc/chromium/policies/managed /etc/chromium-browser/policies/managed; do
		place_file "${1}/policy.json" 0644 "${ROOT_DIR}${dir}/pneumoedge.json"
	done
}

install_units() {
	local tmp units=(pneumoedge.service pneumoedge-health.service) unit
	tmp="$(mktemp -d)"
	cleanup_on_exit "$tmp"
	[[ "$WITH_KIOSK" == 0 ]] || units+=(pneumoedge-kiosk.service)
	[[ "$IMAGE" == 0 || "$WITH_KIOSK" == 0 ]] || units+=(pneumoedge-firstboot.service)
	for unit in "${units[@]}"; do
		render_template "${STAGED}/firmware_scripts/systemd/${unit}.in" INSTALL_PREFIX DATA_DIR \
			SERVICE_USER KIOSK_USER APP_HOST APP_PORT DEVICE_PYTHON WATCHDOG_SEC START_TIMEOUT_SEC KIOSK_TTY LOG_DIR \
			>"${tmp}/${unit}"
		place_file "${tmp}/${unit}" 0644 "${ROOT_DIR}/etc/systemd/system/${unit}"
	done
	render_template "${STAGED}/firmware_scripts/systemd/pneumoedge-watchdog.conf.in" HW_WATCHDOG_SEC >"${tmp}/watchdog.conf"
	place_file "${tmp}/watchdog.conf" 0644 "${ROOT_DIR}/etc/systemd/system.conf.d/pneumoedge-watchdog.conf"
	[[ "$WITH_KIOSK" == 0 ]] || install_browser_policy "$tmp"
	run_system systemctl daemon-reload
	run_system systemctl daemon-reexec # the hardware watchdog setting is read by the manager
	enable_units "${units[@]}"
	[[ "$IMAGE" == 1 ]] || run_system systemctl restart pneumoedge.service
	if [[ "$WITH_KIOSK" == 1 ]]; then
		if command -v raspi-config >/dev/null; then
			# B1: boot to the console (multi-user.target) without the desktop's auto-login, so the
			# kiosk owns the screen.
			run_system raspi-config nonint do_boot_behaviour B1
		fi
		[[ "$IMAGE" == 1 ]] || run_system systemctl restart pneumoedge-kiosk.service
	fi
}

read_only_root() {
	if [[ "$READ_ONLY_ROOT" == 0 ]]; then
		log "read-only root not requested (--read-only-root)"
		return 0
	fi
	[[ -n "$ROOT_DIR" || "$DRY_RUN" == 1 ]] || need raspi-config
	# raspi-config's non-interactive convention: 0 means enable. overlayroot is installed (step 03
	# or the image), so it downloads nothing.
	run_system raspi-config nonint do_overlayfs 0
	log "the read-only root takes effect at the next reboot; afterwards check that 'findmnt $(data_mount)' shows the ${DATA_PARTITION_LABEL} partition rw. Updates write to it, so they need no change to the root."
}

health_check() {
	if [[ -n "$ROOT_DIR" || "$DRY_RUN" == 1 || "$IMAGE" == 1 ]]; then
		log "health check skipped: nothing was started (--root, --dry-run or --image)"
		return 0
	fi
	if [[ -n "$SWITCHED_FROM" ]]; then
		settle_switch update "$BUNDLE_VERSION" "$SWITCHED_FROM" "$SWITCHED_PREVIOUS" ||
			die "release ${BUNDLE_VERSION} failed its health check and was rolled back; ${SWITCHED_FROM} is serving. See 'journalctl -u pneumoedge.service -u pneumoedge-kiosk.service'."
		return 0
	fi
	check_health "$BUNDLE_MODEL_SHA256" ||
		die "the kiosk did not become healthy; see 'journalctl -u pneumoedge.service -u pneumoedge-kiosk.service'"
	mark_healthy "$BUNDLE_VERSION"
	install_updater "$BUNDLE_VERSION"
}

main() {
	init_common
	parse_args "$@"
	load_config "$CONFIG_ARG"
	# A device without the screen has no screen to health-check.
	if [[ "$WITH_KIOSK" == 0 ]]; then SCREEN_UNIT=""; fi
	open_log "${ROOT_DIR}${LOG_DIR}/provision.log"
	log "provisioning from ${TARBALL}${ROOT_DIR:+ into root ${ROOT_DIR}}$([[ "$DRY_RUN" == 1 ]] && echo ' (dry run)')"
	step 01 "Check prerequisites" check_prerequisites
	step 02 "Verify the bundle" verify_bundle
	step 03 "Install offline .deb packages" install_debs
	step 04 "Create users" create_users
	step 05 "Prepare the data directory" prepare_data_dir
	step 06 "Install the release and its venv" install_and_switch
	step 07 "Write the device config and trusted key" write_config
	step 08 "Install the systemd units" install_units
	step 09 "Read-only root" read_only_root
	step 10 "Health check" health_check
	log "done: release ${BUNDLE_VERSION} with model ${BUNDLE_MODEL}"
}

main "$@"
