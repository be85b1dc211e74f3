#!/usr/bin/env bash
# The kiosk screen: Chromium in kiosk mode on the local web app, inside a Wayland kiosk
# compositor (cage, or labwc from the Raspberry Pi OS desktop). Run by pneumoedge-kiosk.service
# as the kiosk user on the touchscreen's virtual terminal.
set -Eeuo pipefail
SCRIPT_NAME=kiosk-session
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
init_common
load_config

browser="$(command -v chromium || command -v chromium-browser)" ||
	die "Chromium is not installed (apt package chromium, or chromium-browser on Bookworm)"
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
log "starting ${browser} under ${compositor}"
case "$compositor" in
cage) exec cage -s -- "$browser" "${chromium_args[@]}" ;;
labwc) exec labwc -s "$(_quote "$browser" "${chromium_args[@]}")" ;;
*) die "KIOSK_COMPOSITOR=${compositor} is not supported; use cage, labwc or auto" ;;
esac
