# shellcheck shell=bash
# Shared helpers for the PneumoEdge firmware scripts: logging, steps, the `run` wrappers that
# honour --dry-run and --root, dependency checks, config loading and clean-up on exit.
# Sourced, never executed. Each script sets SCRIPT_NAME before sourcing and calls init_common.

# Where this library and its sibling scripts live (shipped inside every bundle). The physical
# path: an update that moves `current` must not switch the running script to the new release's files.
FIRMWARE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

DRY_RUN="${DRY_RUN:-0}"
ROOT_DIR="${ROOT_DIR:-}"
LOG_FILE="${LOG_FILE:-}"
_CLEANUP_PATHS=()

# ---------------------------------------------------------------------------------- logging

_timestamp() { date -u +%Y-%m-%dT%H:%M:%SZ; }

# log MESSAGE...: one timestamped line to stderr and, when LOG_FILE is set, appended to it.
log() {
	local line
	line="$(_timestamp) [${SCRIPT_NAME:-pneumoedge}] $*"
	printf '%s\n' "$line" >&2
	if [[ -n "$LOG_FILE" ]]; then
		printf '%s\n' "$line" >>"$LOG_FILE" || true
	fi
}

warn() { log "WARNING: $*"; }

# die MESSAGE...: log an error (say what is wrong and how to fix it) and exit 1.
die() {
	log "ERROR: $*"
	exit 1
}

# open_log FILE: start appending to FILE; in a dry run, or when FILE cannot be written, log to
# the console only (a dry run must leave no trace).
open_log() {
	local file="$1"
	if [[ "$DRY_RUN" == 1 ]]; then
		return 0
	fi
	if mkdir -p "$(dirname "$file")" 2>/dev/null && touch "$file" 2>/dev/null; then
		LOG_FILE="$file"
		log "Logging to $file"
	else
		warn "cannot write the log file $file; logging to the console only"
	fi
}

# step NUMBER TITLE FUNCTION [ARGS...]: run one numbered step between Begin/End lines.
step() {
	local number="$1" title="$2"
	shift 2
	log "Begin ${number} ${title}"
	"$@"
	log "End ${number} ${title}"
}

_on_error() {
	local status="$1" line="$2" command="$3"
	log "ERROR: '${command}' failed with exit status ${status} (${SCRIPT_NAME:-script} line ${line})"
}

_on_exit() {
	local path
	for path in "${_CLEANUP_PATHS[@]}"; do
		[[ -n "$path" && -e "$path" ]] && rm -rf -- "$path"
	done
	return 0
}

# cleanup_on_exit PATH: remove PATH when the script ends, however it ends.
cleanup_on_exit() { _CLEANUP_PATHS+=("$1"); }

# keep_path PATH: forget an earlier cleanup_on_exit (the path became a real install).
keep_path() {
	local i
	for i in "${!_CLEANUP_PATHS[@]}"; do
		[[ "${_CLEANUP_PATHS[$i]}" == "$1" ]] && unset '_CLEANUP_PATHS[i]'
	done
	return 0
}

init_common() {
	set -Eeuo pipefail
	umask 022
	trap '_on_error "$?" "$LINENO" "$BASH_COMMAND"' ERR
	trap _on_exit EXIT
}

# ---------------------------------------------------------------------------------- running

_quote() {
	local out="" arg
	for arg in "$@"; do
		out+="$(printf '%q' "$arg") "
	done
	printf '%s' "${out% }"
}

# run CMD...: run a command that changes files; in a dry run only say what would run.
run() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would run: $(_quote "$@")"
		return 0
	fi
	"$@"
}

# run_system CMD...: run a command that changes the running system itself (users, services,
# boot configuration). Under --root it cannot apply to the tree being prepared, so it is only
# reported, like in a dry run.
run_system() {
	if [[ -n "$ROOT_DIR" ]]; then
		log "would run (skipped under --root ${ROOT_DIR}): $(_quote "$@")"
		return 0
	fi
	run "$@"
}

# need CMD...: check that every command exists; list all missing ones at once.
need() {
	local missing=() cmd
	for cmd in "$@"; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
	done
	if ((${#missing[@]})); then
		die "missing commands: ${missing[*]}. Install them (on Debian/Raspberry Pi OS: apt-get install <package>) and run again."
	fi
}

# need_root: provisioning changes the system; allow non-root only for a dry run or under --root.
need_root() {
	if [[ "$(id -u)" != 0 && "$DRY_RUN" != 1 && -z "$ROOT_DIR" ]]; then
		die "this must run as root (use sudo), or with --dry-run / --root DIR to rehearse"
	fi
}

# confirm PROMPT EXPECTED: ask the user to type EXPECTED; anything else aborts.
confirm() {
	local prompt="$1" expected="$2" answer=""
	printf '%s ' "$prompt" >&2
	read -r answer || true
	[[ "$answer" == "$expected" ]] || die "not confirmed (expected '${expected}', got '${answer}'); nothing was changed"
}

# ---------------------------------------------------------------------------------- config

# load_config [FILE]: source the config file (every variable there is VAR=${VAR:-default},
# so the environment overrides it). Order: FILE, $PNEUMOEDGE_CONFIG, /etc/pneumoedge/pneumoedge.conf
# (a provisioned device), then the pneumoedge.conf shipped next to the scripts.
load_config() {
	local file="${1:-${PNEUMOEDGE_CONFIG:-}}"
	if [[ -z "$file" ]]; then
		if [[ -f "${ROOT_DIR}/etc/pneumoedge/pneumoedge.conf" ]]; then
			file="${ROOT_DIR}/etc/pneumoedge/pneumoedge.conf"
		else
			file="${FIRMWARE_DIR}/pneumoedge.conf"
		fi
	fi
	[[ -f "$file" ]] || die "config file ${file} does not exist; pass --config FILE or set PNEUMOEDGE_CONFIG"
	# shellcheck source=../pneumoedge.conf
	source "$file"
	log "config: ${file}"
}

# ---------------------------------------------------------------------------------- checks

# is_safe_name VALUE: a version or model name usable as a single path component.
is_safe_name() { [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]]; }

# manifest_get FILE KEY: read KEY=value from a MANIFEST file without sourcing it.
manifest_get() {
	local file="$1" key="$2" line
	while IFS= read -r line; do
		if [[ "$line" == "${key}="* ]]; then
			printf '%s\n' "${line#*=}"
			return 0
		fi
	done <"$file"
	return 1
}

# render_template FILE VAR...: print FILE with every @VAR@ replaced by the variable's value.
render_template() {
	local file="$1" content name
	shift
	content="$(<"$file")"
	for name in "$@"; do
		content="${content//@${name}@/${!name}}"
	done
	[[ "$content" != *@[A-Z_]*@* ]] || die "template ${file} still has an unfilled @VARIABLE@; this is a bug in the script"
	printf '%s\n' "$content"
}

# place_file SOURCE MODE DEST: install a file (creating its folder); in a dry run only say so.
place_file() {
	local source="$1" mode="$2" dest="$3"
	run install -D -m "$mode" "$source" "$dest"
	[[ "$DRY_RUN" == 1 ]] || log "installed ${dest} (mode ${mode})"
}
