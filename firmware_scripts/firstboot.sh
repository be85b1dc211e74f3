#!/usr/bin/env bash
# First boot of a PneumoEdge golden image: ask, on the kiosk's screen, for the two things that
# differ between clinics (the clinic's name and the operator access code), store them, and let the
# kiosk start. Run once by pneumoedge-firstboot.service; nothing else is asked.
set -Eeuo pipefail
SCRIPT_NAME=firstboot
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	cat <<USAGE
Usage: sudo $0 [--root DIR] [--dry-run]

Asks for the clinic's name and the operator access code (twice), then writes the name to
/etc/pneumoedge/site.conf (CLINIC_NAME) and the access code, hashed, to the kiosk's data folder
(DATA_DIR/access-code.hash, with the installed release's own code). The kiosk's staff logins are
made on the kiosk itself (its first-run administrator page). Reads the answers from standard
input (the unit connects it to the screen's terminal).

Options:
  --root DIR   write into DIR as if it were / (tests, rehearsals)
  --dry-run    ask, check and say what would be written; write nothing
  -h, --help   show this help
USAGE
}

while (($#)); do
	case "$1" in
	--root) ROOT_DIR="$(realpath -m "${2:?--root needs a directory}")" && shift ;;
	--dry-run) DRY_RUN=1 ;;
	-h | --help) usage && exit 0 ;;
	*) die "unknown argument $1; see $0 --help" ;;
	esac
	shift
done
if [[ "$ROOT_DIR" == / ]]; then ROOT_DIR=""; fi
init_common
load_config

# ask PROMPT [-s]: one line from the screen; -s hides what is typed.
ask() {
	local answer=""
	printf '%s ' "$1" >&2
	read -r ${2:+"$2"} answer || die "no answer (end of input); the first-boot setup stops and runs again at the next boot"
	[[ -z "${2:-}" ]] || printf '\n' >&2
	printf '%s' "$answer"
}

ask_clinic_name() {
	local name allowed="^[[:alnum:] .,()&/'-]{2,80}$"
	while :; do
		name="$(ask "Clinic name (e.g. 'Kisumu West Health Centre'):")" || exit 1
		if [[ "$name" =~ $allowed ]]; then
			printf '%s' "$name"
			return 0
		fi
		warn "use 2 to 80 letters, digits, spaces and . , ( ) & / ' -"
	done
}

ask_access_code() {
	local code again
	while :; do
		code="$(ask "Operator access code for clinic systems (at least 8 characters):" -s)" || exit 1
		again="$(ask "The same access code again:" -s)" || exit 1
		if [[ "$code" != "$again" ]]; then
			warn "the two codes differ; try again"
		elif ((${#code} < 8)); then
			warn "the access code is too short; use at least 8 characters"
		else
			printf '%s' "$code"
			return 0
		fi
	done
}

# store_access_code CODE: hashed by the kiosk's own code (edge.webapp.access.request_guard), into DATA_DIR.
store_access_code() {
	local release="${ROOT_DIR}${INSTALL_PREFIX}/current"
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would store the access code's hash in ${DATA_DIR}"
		return 0
	fi
	PNEUMOEDGE_ACCESS_CODE="$1" PYTHONPATH="${release}/app" "${release}/venv/bin/python" -c '
import os, sys
from edge.webapp.access import request_guard
request_guard.store_access_code(sys.argv[1], os.environ["PNEUMOEDGE_ACCESS_CODE"])
' "${ROOT_DIR}${DATA_DIR}" || die "the kiosk refused this access code (message above); the setup runs again at the next boot"
	run_system chown "${SERVICE_USER}:${SERVICE_USER}" "${DATA_DIR}/access-code.hash"
}

main() {
	local name code tmp
	log "PneumoEdge first-boot setup"
	name="$(ask_clinic_name)" || exit 1
	code="$(ask_access_code)" || exit 1
	store_access_code "$code"
	tmp="$(mktemp)"
	cleanup_on_exit "$tmp"
	printf '# Written by firstboot.sh on %s\nCLINIC_NAME="%s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" >"$tmp"
	# Written last: its presence tells pneumoedge-firstboot.service that the setup is done.
	place_file "$tmp" 0644 "${ROOT_DIR}/etc/pneumoedge/site.conf"
	log "done: clinic '${name}'; the kiosk starts now"
}

main
