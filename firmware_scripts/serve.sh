#!/usr/bin/env bash
# Start the kiosk web app of the release this script belongs to (the unit runs it through
# `current/`, and the physical path pins the process to that release even if `current` moves).
# Config: $PNEUMOEDGE_CONFIG (the unit sets /etc/pneumoedge/pneumoedge.conf).
set -Eeuo pipefail
SCRIPT_NAME=serve
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	cat <<USAGE
Usage: $0 [-h | --help]

Start the kiosk web app of the release this script belongs to (pneumoedge.service runs it through
kiosk_health.py supervise, as SERVICE_USER): the release's own venv and model, on
APP_HOST:APP_PORT, with the records in DATA_DIR. Config: \$PNEUMOEDGE_CONFIG (the unit sets
/etc/pneumoedge/pneumoedge.conf). Takes no other arguments; run it by hand only to debug a release.
USAGE
}

case "${1:-}" in
"") ;;
-h | --help) usage && exit 0 ;;
*) die "unknown argument $1; see $0 --help" ;;
esac
init_common
load_config

release="$(cd "${FIRMWARE_DIR}/.." && pwd -P)"
model="$(manifest_get "${release}/MANIFEST" model_name)" ||
	die "${release}/MANIFEST has no model_name; reinstall the release with update.sh"
# The kiosk warns on screen and on /healthz when the clock reads earlier than the release's build.
PNEUMOEDGE_CLOCK_NOT_BEFORE="$(manifest_get "${release}/MANIFEST" created_utc)" || PNEUMOEDGE_CLOCK_NOT_BEFORE=""
export PNEUMOEDGE_CLOCK_NOT_BEFORE
log "serving release $(manifest_get "${release}/MANIFEST" version) with model ${model} on ${APP_HOST}:${APP_PORT}"
exec "${release}/venv/bin/pneumoedge" serve --model "${release}/models/${model}" \
	--host "$APP_HOST" --port "$APP_PORT" --data-dir "$DATA_DIR" --timezone "${KIOSK_TIMEZONE:-UTC}"
