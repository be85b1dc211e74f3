#!/usr/bin/env bash
# The kiosk screen: Chromium in kiosk mode on the local web app, inside a Wayland kiosk
# compositor (cage, or labwc from the Raspberry Pi OS desktop). Run by pneumoedge-kiosk.service
# as the kiosk user on the touchscreen's virtual terminal.
set -Eeuo pipefail
SCRIPT_NAME=kiosk-session
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	cat <<USAGE
Usage: $0 [--dry-run]

The kiosk screen, run by pneumoedge-kiosk.service on KIOSK_TTY as KIOSK_USER: Chromium in kiosk
mode on http://APP_HOST:APP_PORT/ inside KIOSK_COMPOSITOR (cage, labwc or auto).
Config: \$PNEUMOEDGE_CONFIG (the unit sets /etc/pneumoedge/pneumoedge.conf).

Options:
  --dry-run   print the command it would start, start nothing
  -h, --help  show this help
USAGE
}

case "${1:-}" in
"") ;;
--dry-run) DRY_RUN=1 ;;
-h | --help) usage && exit 0 ;;
*) die "unknown argument $1; see $0 --help" ;;
esac
init_common
load_config

browser="$(command -v chromium || command -v chromium-browser)" ||
	die "Chromium is not installed (apt package chromium, or chromium-browser on Bookworm)"
# The unit's private RuntimeDirectory= (the hardened unit hides /run/user): the Wayland socket and
# the browser profile go there.
if [[ -n "${RUNTIME_DIRECTORY:-}" ]]; then export XDG_RUNTIME_DIR="$RUNTIME_DIRECTORY"; fi
profile="${XDG_RUNTIME_DIR:-/tmp}/pneumoedge-chromium"
# Incognito, with a profile in RAM: no patient image or result is kept by the browser.
chromium_args=(
	--kiosk "http://${APP_HOST}:${APP_PORT}/"
	--incognito --user-data-dir="$profile"
	--no-first-run --noerrdialogs --disable-infobars --disable-session-crashed-bubble
	--disable-features=Translate --overscroll-history-navigation=0 --password-store=basic
	--ozone-platform=wayland
)

compositor="$KIOSK_COMPOSITOR"
if [[ "$compositor" == auto ]]; then
	if command -v cage >/dev/null; then compositor=cage; else compositor=labwc; fi
fi
case "$compositor" in
cage) session=(cage -s -- "$browser" "${chromium_args[@]}") ;;
labwc) session=(labwc -s "$(_quote "$browser" "${chromium_args[@]}")") ;;
*) die "KIOSK_COMPOSITOR=${compositor} is not supported; use cage, labwc or auto" ;;
esac
log "starting ${browser} under ${compositor}"
if [[ "$DRY_RUN" == 1 ]]; then
	log "would run: $(_quote "${session[@]}")"
	exit 0
fi
exec "${session[@]}"
