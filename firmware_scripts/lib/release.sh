# shellcheck shell=bash
# Releases on the device: verify a bundle tarball, install it side by side under
# INSTALL_PREFIX/releases/<version> with its own venv, and switch `current` atomically.
# Used by provision.sh and update.sh. Sourced after common.sh; expects the config loaded.

# Filled by stage_bundle.
STAGED=""
BUNDLE_VERSION=""
BUNDLE_MODEL=""
BUNDLE_MODEL_SHA256=""
BUNDLE_RUNTIME_MODULE=""

prefix_dir() { printf '%s%s' "$ROOT_DIR" "$INSTALL_PREFIX"; }

# verify_sha256sums DIR: every file in DIR is listed in DIR/SHA256SUMS and matches; no extras.
verify_sha256sums() {
	local dir="$1" listed actual
	[[ -f "${dir}/SHA256SUMS" ]] || die "the bundle has no SHA256SUMS; it was not made by build-bundle.sh. Rebuild it."
	if ! (cd "$dir" && sha256sum --check --strict --quiet SHA256SUMS) >&2; then
		die "checksum verification failed: the bundle is damaged or was altered. Copy it again from the laptop (and compare its .sha256 file); nothing was installed."
	fi
	listed="$(sed -E 's/^[0-9a-f]{64} [ *]//' "${dir}/SHA256SUMS" | sort)"
	actual="$(cd "$dir" && find . -type f ! -name SHA256SUMS -printf '%P\n' | sort)"
	if [[ "$listed" != "$actual" ]]; then
		die "the bundle holds files that SHA256SUMS does not list: $(comm -13 <(printf '%s\n' "$listed") <(printf '%s\n' "$actual") | head -5 | tr '\n' ' ')- it was altered; nothing was installed."
	fi
}

# check_tar_members TARBALL [NAME]: a bundle holds only plain files and folders under relative
# paths, so unpacking it cannot write outside the scratch folder (no links, devices, /abs or ../
# paths). Messages name the bundle as NAME (the technician's file, not the scratch copy).
check_tar_members() {
	local tarball="$1" shown="${2:-$1}" listing names
	listing="$(tar -tvzf "$tarball" 2>/dev/null)" || die "${shown} is not a readable .tar.gz (truncated or damaged); copy it again. Nothing was installed."
	names="$(tar -tzf "$tarball")"
	if cut -c1 <<<"$listing" | grep -qv '^[-d]$'; then
		die "${shown} holds links or special files; bundles from build-bundle.sh never do. Nothing was installed."
	fi
	if grep -qE '^/|(^|/)\.\.(/|$)' <<<"$names"; then
		die "${shown} holds absolute or ../ paths; refusing to unpack it. Nothing was installed."
	fi
}

# verify_signed_copy TARBALL PUBKEY DIR: copy the tarball, its .sha256 and its .sig into DIR,
# check that the .sha256 line is signed by PUBKEY and names the copy's sha256. The checks run on
# the copies, so the file cannot be swapped between the check and the unpacking.
verify_signed_copy() {
	local tarball="$1" pubkey="$2" dir="$3" expected
	[[ -f "${tarball}.sha256" && -f "${tarball}.sig" ]] ||
		die "${tarball} is not signed: ${tarball}.sha256 and ${tarball}.sig must be next to it. Copy all three files from the laptop; unsigned bundles are never installed. Nothing was installed."
	cp -- "$tarball" "${dir}/bundle.tar.gz"
	cp -- "${tarball}.sha256" "${dir}/bundle.sha256"
	cp -- "${tarball}.sig" "${dir}/bundle.sig"
	verify_signature "$pubkey" "${dir}/bundle.sha256" "${dir}/bundle.sig" ||
		die "the signature ${tarball}.sig is not valid for this device's trusted key $(key_fingerprint "$pubkey"): the bundle was altered, or signed with another key. Nothing was installed."
	log "signature verified (key $(key_fingerprint "$pubkey"))"
	read -r expected _ <"${dir}/bundle.sha256"
	[[ "$(sha256sum "${dir}/bundle.tar.gz" | cut -d' ' -f1)" == "$expected" ]] ||
		die "${tarball} does not match ${tarball}.sha256: the copy is damaged. Copy it again; nothing was installed."
	log "tarball matches its signed sha256"
}

# unpacked_kb TARBALL: what unpacking the (already checked) tarball takes, in KiB.
unpacked_kb() {
	tar -tvzf "$1" | awk '{ total += $3 } END { printf "%d\n", total / 1024 + 1 }'
}

# check_scratch_space DIR KB NAME: DIR's file system (TMPDIR, /var/tmp: RAM under a read-only
# root's overlay) must hold KB more with 50 MB to spare, before anything is written there.
check_scratch_space() {
	local dir="$1" need_kb=$(($2 + 50 * 1024)) shown="$3" avail_kb
	avail_kb="$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')"
	[[ "$avail_kb" =~ ^[0-9]+$ ]] || die "cannot read the free space of ${dir} (df); nothing was installed"
	((avail_kb >= need_kb)) ||
		die "not enough free space in ${dir} to check and unpack ${shown}: $((avail_kb / 1024)) MB free, $((need_kb / 1024)) MB needed. Set TMPDIR to a folder with room (e.g. on the data partition) and run again; nothing was installed."
}

# stage_bundle TARBALL PUBKEY: check the bundle's signature with PUBKEY, unpack it to a scratch
# folder, verify SHA256SUMS and read the MANIFEST. Nothing from the bundle runs before this passes.
stage_bundle() {
	local tarball="$1" pubkey="$2" scratch top
	[[ -f "$tarball" ]] || die "bundle ${tarball} does not exist; pass the .tar.gz made by build-bundle.sh"
	scratch="$(mktemp -d "${TMPDIR:-/var/tmp}/pneumoedge-stage.XXXXXX")"
	cleanup_on_exit "$scratch"
	check_scratch_space "$scratch" "$(du -sk "$tarball" | cut -f1)" "$tarball"
	verify_signed_copy "$tarball" "$pubkey" "$scratch"
	check_tar_members "${scratch}/bundle.tar.gz" "$tarball"
	check_scratch_space "$scratch" "$(unpacked_kb "${scratch}/bundle.tar.gz")" "$tarball"
	mkdir "${scratch}/unpacked"
	tar -xzf "${scratch}/bundle.tar.gz" -C "${scratch}/unpacked" --no-same-owner ||
		die "${tarball} is not a readable .tar.gz; copy it again"
	top="$(find "${scratch}/unpacked" -mindepth 1 -maxdepth 1)"
	[[ -d "$top" && "$(printf '%s\n' "$top" | wc -l)" == 1 ]] ||
		die "${tarball} must hold exactly one top-level folder; it was not made by build-bundle.sh"
	verify_sha256sums "$top"
	log "all files match SHA256SUMS"
	[[ -f "${top}/MANIFEST" ]] || die "the bundle has no MANIFEST; rebuild it with build-bundle.sh"
	BUNDLE_VERSION="$(manifest_get "${top}/MANIFEST" version)" || die "MANIFEST lacks version"
	BUNDLE_MODEL="$(manifest_get "${top}/MANIFEST" model_name)" || die "MANIFEST lacks model_name"
	BUNDLE_MODEL_SHA256="$(manifest_get "${top}/MANIFEST" model_sha256)" || die "MANIFEST lacks model_sha256"
	BUNDLE_RUNTIME_MODULE="$(manifest_get "${top}/MANIFEST" runtime_module)" || die "MANIFEST lacks runtime_module"
	is_safe_name "$BUNDLE_VERSION" || die "MANIFEST version '${BUNDLE_VERSION}' is not a plain name"
	is_safe_name "$BUNDLE_MODEL" || die "MANIFEST model_name '${BUNDLE_MODEL}' is not a plain name"
	STAGED="$top"
	log "bundle version ${BUNDLE_VERSION}, model ${BUNDLE_MODEL} (sha256 ${BUNDLE_MODEL_SHA256})"
}

# incompatible MESSAGE: a real run stops; a dry run (a rehearsal of a pi64 bundle on an x86 laptop)
# says a device must match and carries on.
incompatible() {
	[[ "$DRY_RUN" == 1 ]] || die "$1"
	warn "$1 (a dry run carries on; on the device this stops the install)"
}

# check_compatible: the device's CPU and Python must be the ones the wheels were built for.
check_compatible() {
	local arch python_version want_arch want_python
	want_arch="$(manifest_get "${STAGED}/MANIFEST" arch)"
	want_python="$(manifest_get "${STAGED}/MANIFEST" python_version)"
	arch="$(uname -m)"
	[[ -x "$DEVICE_PYTHON" ]] || die "DEVICE_PYTHON=${DEVICE_PYTHON} is not an executable Python; set it in pneumoedge.conf"
	python_version="$("$DEVICE_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
	if [[ "$arch" != "$want_arch" ]]; then
		incompatible "this bundle is for ${want_arch} but this machine is ${arch}; build one with the right --target (see build-bundle.sh --help)"
		return 0
	fi
	if [[ "$python_version" != "$want_python" ]]; then
		incompatible "this bundle's wheels are for Python ${want_python} but ${DEVICE_PYTHON} is ${python_version}; build it with the matching --target"
		return 0
	fi
	"$DEVICE_PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
		die "${DEVICE_PYTHON} cannot make venvs; install the python3-venv package (it is on Raspberry Pi OS by default)"
	log "device matches the bundle: ${arch}, Python ${python_version}"
}

# check_clock [NOW]: the device's clock (or NOW, seconds since 1970) must not be earlier than
# the staged release's build time. Pi 4 and Zero 2 W have no battery clock: after a power cut
# fake-hwclock restores the last saved time, and without it the clock starts in the past, so
# records would carry wrong dates.
check_clock() {
	local now="${1:-$(date -u +%s)}" built built_s
	built="$(manifest_get "${STAGED}/MANIFEST" created_utc)" || die "MANIFEST lacks created_utc"
	built_s="$(date -u -d "$built" +%s)" || die "MANIFEST created_utc '${built}' is not a date"
	if ((now < built_s)); then
		die "the clock says $(date -u -d "@${now}" +%Y-%m-%dT%H:%M:%SZ), before this release was built (${built}): it is wrong, and every record would carry a wrong date. Set it (provision.sh --set-time 'YYYY-MM-DD HH:MM', or 'sudo date -s ...') and run again. Nothing was installed."
	fi
	log "the clock ($(date -u -d "@${now}" +%Y-%m-%dT%H:%M:%SZ)) is after the release's build time (${built})"
}

# existing_parent PATH: PATH, or its nearest folder that exists (what df can measure).
existing_parent() {
	local path="$1"
	while [[ ! -e "$path" && "$path" == /* && "$path" != / ]]; do path="$(dirname "$path")"; done
	printf '%s' "$path"
}

# check_free_space: the release's file system must hold the staged bundle three times over (its
# copy, plus the venv its wheels unpack into) and a snapshot of the records database, with 50 MB to
# spare: an update that fills the card would leave the kiosk unable to record cases.
check_free_space() {
	local target db="${ROOT_DIR}${DATA_DIR}/pneumoedge.sqlite3" bundle_kb db_kb=0 need_kb avail_kb
	target="$(existing_parent "$(prefix_dir)")"
	bundle_kb="$(du -sk "$STAGED" | cut -f1)"
	[[ ! -f "$db" ]] || db_kb="$(du -sk "$db" | cut -f1)"
	need_kb=$((3 * bundle_kb + db_kb + 50 * 1024))
	avail_kb="$(df -Pk "$target" | awk 'NR == 2 { print $4 }')"
	[[ "$avail_kb" =~ ^[0-9]+$ ]] || die "cannot read the free space of ${target} (df); nothing was installed"
	((avail_kb >= need_kb)) ||
		die "not enough free space on ${target}: $((avail_kb / 1024)) MB free, this release needs $((need_kb / 1024)) MB. Remove old exports or releases (update.sh keeps KEEP_RELEASES) and run again; nothing was installed."
	log "free space: $((avail_kb / 1024)) MB, this release needs $((need_kb / 1024)) MB"
}

# release_dir VERSION: where a release lives (under --root, inside the root).
release_dir() { printf '%s/releases/%s' "$(prefix_dir)" "$1"; }

# install_release: put the staged bundle at releases/<version> with its own venv, installed
# from the bundle's wheels only, and prove the model verifies and the runtime imports. The
# .installed marker is written last: a release without it is incomplete and is redone.
install_release() {
	local dest
	dest="$(release_dir "$BUNDLE_VERSION")"
	if [[ -f "${dest}/.installed" ]] && cmp -s "${dest}/SHA256SUMS" "${STAGED}/SHA256SUMS"; then
		log "release ${BUNDLE_VERSION} is already installed at ${dest}; keeping it"
		return 0
	fi
	if [[ -e "$dest" ]]; then
		[[ "$BUNDLE_VERSION" != "$(current_version)" ]] ||
			die "this bundle is named ${BUNDLE_VERSION}, like the running release, but its files differ: build it again with a new --version. The running release was not touched."
		[[ ! -f "${dest}/.installed" ]] ||
			die "this bundle is named ${BUNDLE_VERSION}, like the installed release at ${dest}, but its files differ: build it again with a new --version. An installed release (a rollback target) is never replaced; nothing was changed."
		warn "removing the incomplete release at ${dest}"
		run rm -rf -- "$dest"
	fi
	run install -d -m 0755 "$(dirname "$dest")"
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would install release ${BUNDLE_VERSION} to ${dest} with a venv from its wheels"
		return 0
	fi
	cleanup_on_exit "$dest"
	cp -R "$STAGED" "$dest"
	chmod -R u=rwX,go=rX "$dest"
	log "creating the venv ${dest}/venv with ${DEVICE_PYTHON}"
	"$DEVICE_PYTHON" -m venv "${dest}/venv"
	log "installing wheels from the bundle only (--no-index)"
	"${dest}/venv/bin/python" -m pip install --quiet --no-index --find-links "${dest}/wheels" \
		--only-binary=:all: --no-cache-dir --disable-pip-version-check -r "${dest}/app/requirements.txt" ||
		die "pip could not install the bundle's wheels; the bundle lacks a wheel for this device. Rebuild it with the right --target"
	# The app's own wheel: its dependencies are the pinned ones just installed.
	"${dest}/venv/bin/python" -m pip install --quiet --no-index --find-links "${dest}/wheels" \
		--only-binary=:all: --no-cache-dir --disable-pip-version-check --no-deps pneumoedge ||
		die "pip could not install the bundle's pneumoedge wheel; rebuild the bundle with build-bundle.sh"
	verify_release_model "$dest"
	if [[ "$BUNDLE_RUNTIME_MODULE" == none ]]; then
		warn "the bundle names no TFLite runtime; this release cannot score"
	else
		"${dest}/venv/bin/python" -c 'import importlib, sys; importlib.import_module(sys.argv[1])' "$BUNDLE_RUNTIME_MODULE" ||
			die "the TFLite runtime ${BUNDLE_RUNTIME_MODULE} does not import in the new venv (tflite-runtime needs numpy<2); see docs/deployment.md"
		log "the TFLite runtime ${BUNDLE_RUNTIME_MODULE} imports"
	fi
	sync --file-system "$dest"
	write_durably "${dest}/.installed" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	keep_path "$dest"
	log "release ${BUNDLE_VERSION} installed at ${dest}"
}

# verify_release_model DIR: the release's model must pass edge.bundle.load_bundle (format and
# model sha256), with the release's own installed code (-I: never a copy in the working folder).
verify_release_model() {
	local dir="$1" sha
	sha="$("${dir}/venv/bin/python" -I -c \
		'import sys; from edge.bundle import load_bundle; print(load_bundle(sys.argv[1]).model_sha256)' \
		"${dir}/models/${BUNDLE_MODEL}")" ||
		die "the model bundle ${BUNDLE_MODEL} failed verification (edge.bundle.load_bundle, message above); it is not installed"
	[[ "$sha" == "$BUNDLE_MODEL_SHA256" ]] ||
		die "the model's sha256 ${sha} differs from the MANIFEST's ${BUNDLE_MODEL_SHA256}; rebuild the bundle"
	log "model ${BUNDLE_MODEL} verified (sha256 ${sha})"
}

# link_version NAME: the release INSTALL_PREFIX/NAME (current, previous) points at, or nothing.
link_version() {
	local link
	link="$(readlink "$(prefix_dir)/$1" 2>/dev/null)" || return 0
	basename "$link"
}

# current_version: the version `current` points at, or nothing.
current_version() { link_version current; }

# write_durably FILE TEXT: replace FILE with TEXT so that a power cut leaves the old or the new
# file, never a torn one: write a temporary file, flush it, rename, flush the folder.
write_durably() {
	local file="$1" text="$2"
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would write ${file}"
		return 0
	fi
	printf '%s\n' "$text" >"${file}.tmp"
	sync -- "${file}.tmp"
	mv -f -- "${file}.tmp" "$file"
	sync -- "$(dirname "$file")"
}

# switch_link NAME VERSION: point INSTALL_PREFIX/NAME at releases/VERSION in one rename. The
# release's files are flushed first and the folder after, so after a power cut the link is the
# old or the new one and the release it names is whole.
switch_link() {
	local name="$1" version="$2" prefix
	prefix="$(prefix_dir)"
	run sync --file-system "$(release_dir "$version")"
	run ln -sfn "releases/${version}" "${prefix}/.${name}.new"
	run mv -T "${prefix}/.${name}.new" "${prefix}/${name}"
	run sync -- "$prefix"
	log "${name} -> releases/${version}"
}

# drop_link NAME: remove INSTALL_PREFIX/NAME (previous), durably.
drop_link() {
	run rm -f -- "$(prefix_dir)/$1"
	run sync -- "$(prefix_dir)"
}

# --- Health: which releases passed their check, and updates still waiting for theirs ---------

# A release that served its model on /healthz after being switched to holds .healthy; one that
# failed its check, or was rolled back from, loses it. Only healthy releases are rolled back to.
is_healthy() { [[ -f "$(release_dir "$1")/.healthy" ]]; }

mark_healthy() {
	write_durably "$(release_dir "$1")/.healthy" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}

# mark_unhealthy VERSION REASON
mark_unhealthy() {
	run rm -f -- "$(release_dir "$1")/.healthy"
	log "release $1 is no longer a rollback target: $2"
}

# The pending-update marker: written before `current` moves to a new release, removed once that
# release passed its health check or was rolled back. While it exists the switch is unconfirmed:
# update.sh --resume (run at boot by pneumoedge-health.service, and by every update.sh run)
# checks the release again and rolls back to the fallback if it is not healthy.
pending_file() { printf '%s/.pending-update' "$(prefix_dir)"; }

# write_pending KIND VERSION FALLBACK PREVIOUS: the switch to VERSION (KIND: update or rollback) is
# about to happen; FALLBACK was current and PREVIOUS was the previous release before it.
write_pending() {
	write_durably "$(pending_file)" "$(printf 'kind=%s\nversion=%s\nfallback=%s\nprevious=%s' "$1" "$2" "$3" "$4")"
}

clear_pending() {
	run rm -f -- "$(pending_file)"
	run sync -- "$(prefix_dir)"
}

# health_checks_run: a real run on the device restarts the app and checks it; --root, --dry-run
# and provision.sh --image (NO_HEALTH_CHECK=1) do neither.
health_checks_run() { [[ -z "$ROOT_DIR" && "$DRY_RUN" != 1 && "${NO_HEALTH_CHECK:-0}" != 1 ]]; }

# prune_releases: keep the KEEP_RELEASES newest installed releases, never current, previous or
# the fallback of a pending update.
prune_releases() {
	local prefix keep dir version n=0 protected=()
	prefix="$(prefix_dir)"
	protected=("$(current_version)" "$(link_version previous)")
	if [[ -f "$(pending_file)" ]]; then protected+=("$(manifest_get "$(pending_file)" fallback)"); fi
	keep="$KEEP_RELEASES"
	while IFS= read -r dir; do
		n=$((n + 1))
		version="$(basename "$dir")"
		if ((n > keep)) && [[ " ${protected[*]} " != *" ${version} "* ]]; then
			log "removing old release ${version} (KEEP_RELEASES=${keep})"
			run rm -rf -- "$dir"
		fi
	done < <(find "${prefix}/releases" -mindepth 2 -maxdepth 2 -name .installed -printf '%T@ %h\n' 2>/dev/null | sort -rn | cut -d' ' -f2-)
}

# --- The records database around a switch (firmware_scripts/kiosk_db.py) -------------------------

# snapshot_db RELEASE [KEEP]: copy the live database (SQLite online backup) as the state RELEASE
# leaves it in, before another release can migrate it; the snapshot of KEEP (a rollback's target)
# is kept with it.
snapshot_db() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would snapshot the records database for a rollback to $1"
		return 0
	fi
	"$DEVICE_PYTHON" "${FIRMWARE_DIR}/kiosk_db.py" snapshot --data-dir "${ROOT_DIR}${DATA_DIR}" --release "$1" \
		${2:+--keep "$2"} ||
		die "could not snapshot the records database in ${ROOT_DIR}${DATA_DIR} (message above); nothing was switched"
}

# restore_db RELEASE LEAVING: before RELEASE runs again, give it its snapshot if LEAVING changed the
# schema (the live database is kept as a snapshot first).
restore_db() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would restore the records database snapshot of $1 if $2 changed its schema"
		return 0
	fi
	"$DEVICE_PYTHON" "${FIRMWARE_DIR}/kiosk_db.py" restore --data-dir "${ROOT_DIR}${DATA_DIR}" --release "$1" --leaving "$2" ||
		warn "could not restore the records database snapshot of $1 (message above); release $1 may refuse the database"
}

# check_health SHA256: wait (HEALTH_TIMEOUT_SEC) until the kiosk's /healthz is ok and serves the
# model with this sha256; give up at once if the app exits. Then the screen must come up too.
check_health() {
	log "waiting up to ${HEALTH_TIMEOUT_SEC} s for http://${APP_HOST}:${APP_PORT}/healthz to serve model sha256 $1"
	"$DEVICE_PYTHON" "${FIRMWARE_DIR}/kiosk_health.py" check --url "http://${APP_HOST}:${APP_PORT}/healthz" \
		--expect-sha256 "$1" --timeout "$HEALTH_TIMEOUT_SEC" --unit pneumoedge.service || return 1
	check_screen
}

# check_screen: the kiosk screen (SCREEN_UNIT, empty on a device without one) is part of healthy:
# restarted on the release being checked, it must run SCREEN_SETTLE_SEC without exiting.
check_screen() {
	if [[ -z "${SCREEN_UNIT:-}" ]]; then
		log "no kiosk screen on this device (SCREEN_UNIT is empty); the app alone is checked"
		return 0
	fi
	run_system systemctl restart "$SCREEN_UNIT" 9>&- || {
		warn "could not restart ${SCREEN_UNIT}"
		return 1
	}
	log "waiting ${SCREEN_SETTLE_SEC:-15} s for ${SCREEN_UNIT} to keep running"
	"$DEVICE_PYTHON" "${FIRMWARE_DIR}/kiosk_health.py" screen --unit "$SCREEN_UNIT" --settle "${SCREEN_SETTLE_SEC:-15}"
}

# --- The stable updater: INSTALL_PREFIX/updater ------------------------------------------------------
# Code run as root to recover a device (pneumoedge-health.service at boot, the technician's
# update.sh) must have proven itself: a copy of firmware_scripts/ of the last release confirmed
# healthy, outside releases/, installed at provisioning and refreshed only when a release passes its
# health check. INSTALL_PREFIX/updater points at INSTALL_PREFIX/updaters/<version>-<hash>.

# updater_works DIR: the copy parses and its update.sh answers --help.
updater_works() {
	local script
	for script in "$1"/*.sh "$1"/lib/*.sh; do bash -n "$script" || return 1; done
	"$1/update.sh" --help >/dev/null 2>&1
}

# install_updater VERSION: make the scripts of release VERSION the stable updater.
install_updater() {
	local version="$1" prefix src tag dest tmp old
	prefix="$(prefix_dir)"
	src="$(release_dir "$version")/firmware_scripts"
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would make the scripts of ${version} the stable updater ${INSTALL_PREFIX}/updater"
		return 0
	fi
	tag="${version}-$(sha256sum "$(release_dir "$version")/SHA256SUMS" | cut -c1-12)"
	dest="${prefix}/updaters/${tag}"
	if [[ ! -d "$dest" ]]; then
		install -d -m 0755 "${prefix}/updaters"
		tmp="$(mktemp -d "${prefix}/updaters/.new.XXXXXX")"
		cleanup_on_exit "$tmp"
		cp -R "${src}/." "$tmp/"
		chmod -R u=rwX,go=rX "$tmp"
		if ! updater_works "$tmp"; then
			warn "the scripts of ${version} do not pass the updater's self-check; the stable updater stays $(link_version updater)"
			return 0
		fi
		sync --file-system "$tmp"
		mv -T "$tmp" "$dest"
		keep_path "$tmp"
	fi
	ln -sfn "updaters/${tag}" "${prefix}/.updater.new"
	mv -T "${prefix}/.updater.new" "${prefix}/updater"
	sync -- "${prefix}/updaters" "$prefix"
	for old in "${prefix}/updaters"/* "${prefix}/updaters"/.new.*; do
		[[ -e "$old" && "$old" != "$dest" && "$old" != "$FIRMWARE_DIR" ]] || continue
		rm -rf -- "$old"
	done
	log "stable updater: ${INSTALL_PREFIX}/updater -> updaters/${tag}"
}

LOCKED=0

# take_update_lock: one update (or provisioning) at a time on the prefix; held until the script ends.
take_update_lock() {
	[[ "$DRY_RUN" != 1 && "$LOCKED" == 0 ]] || return 0
	install -d -m 0755 "$(prefix_dir)"
	exec 9>"$(prefix_dir)/.update.lock"
	flock -n 9 || die "another update is running (lock $(prefix_dir)/.update.lock); wait for it to finish"
	LOCKED=1
}

# --- Switching releases: update.sh, update.sh --rollback, provision.sh and the boot-time resume ----
# Every switch is the same: snapshot the records, write the pending marker, move the links,
# restart, health-check (app and screen); keep the target only if it passes, else go back to the
# release left, which keeps its .healthy mark until the target has proven itself.

# release_sha256 VERSION: the model sha256 an installed release must serve.
release_sha256() { manifest_get "$(release_dir "$1")/MANIFEST" model_sha256; }

# restore_previous VERSION: point previous at VERSION again, or remove it when there is none.
restore_previous() {
	if [[ -n "$1" && "$1" != "$(current_version)" && -f "$(release_dir "$1")/.installed" ]]; then
		switch_link previous "$1"
	else
		drop_link previous
	fi
}

# restart_and_check SHA256: restart the app and wait for /healthz to serve SHA256 and the screen to
# run. Called in an `if`, so every failure is returned explicitly.
restart_and_check() {
	# 9>&-: whatever the restart spawns must not inherit (and so hold) the update lock.
	run_system systemctl restart pneumoedge.service 9>&- || return 1
	if ! health_checks_run; then
		log "health check skipped: nothing was restarted (--root or --dry-run)"
		return 0
	fi
	pause_point health-window
	check_health "$1" || return 1
}

# roll_back_to VERSION LEAVING: point current at VERSION again, with a database it can read, and
# prove it serves.
roll_back_to() {
	local version="$1" leaving="$2"
	warn "rolling back to release ${version}"
	switch_link current "$version"
	pause_point rollback
	run_system systemctl stop pneumoedge.service 9>&- || warn "could not stop the app of ${leaving}"
	restore_db "$version" "$leaving"
	if ! restart_and_check "$(release_sha256 "$version")"; then
		die "ROLLBACK FAILED: release ${version} is not healthy either. See 'journalctl -u pneumoedge.service -u pneumoedge-kiosk.service'; reprovision with a known-good bundle."
	fi
	if health_checks_run; then mark_healthy "$version"; fi
	log "release ${version} is serving again"
}

# pause_point STEP: a test-only hook for the booted system test (tests/system), inert otherwise:
# when PNEUMOEDGE_PAUSE_FILE (default /run/pneumoedge-test/pause-at; /run is emptied at every
# boot) names STEP, say so and wait there, so the test can cut the power at exactly this step.
# STEPs: before-switch, during-switch, after-switch, health-window, rollback.
pause_point() {
	local file="${PNEUMOEDGE_PAUSE_FILE:-/run/pneumoedge-test/pause-at}"
	[[ -f "$file" && "$(<"$file")" == "$1" ]] || return 0
	log "PNEUMOEDGE-TEST-PAUSE: $1 (${file}); waiting for the power cut"
	sleep 3600
}

# begin_switch KIND VERSION: from the running release to VERSION (KIND update: a newer or
# reinstalled release, previous becomes the running one; rollback: back to previous).
begin_switch() {
	local kind="$1" version="$2" running previous
	running="$(current_version)"
	previous="$(link_version previous)"
	pause_point before-switch
	if [[ "$kind" == rollback ]]; then snapshot_db "$running" "$version"; else snapshot_db "$running"; fi
	if health_checks_run; then write_pending "$kind" "$version" "$running" "$previous"; fi
	[[ "$kind" == rollback ]] || switch_link previous "$running"
	pause_point during-switch
	switch_link current "$version"
	pause_point after-switch
	if [[ "$kind" == rollback ]]; then
		run_system systemctl stop pneumoedge.service 9>&- || warn "could not stop the app of ${running}"
		restore_db "$version" "$running"
	fi
}

# settle_switch KIND VERSION FALLBACK PREVIOUS: the health check decides. Healthy: VERSION is
# confirmed (and becomes the stable updater). Not: back to FALLBACK, previous restored; returns 1.
settle_switch() {
	local kind="$1" version="$2" fallback="$3" previous="$4"
	if restart_and_check "$(release_sha256 "$version")"; then
		confirm_switch "$kind" "$version" "$fallback"
		return 0
	fi
	mark_unhealthy "$version" "it failed its health check"
	roll_back_to "$fallback" "$version"
	restore_previous "$previous"
	clear_pending
	return 1
}

# confirm_switch KIND VERSION FALLBACK: VERSION passed (or, under --root, skipped) its check.
confirm_switch() {
	local kind="$1" version="$2" fallback="$3"
	if [[ "$kind" == rollback ]]; then
		drop_link previous
	else
		switch_link previous "$fallback" # also repairs a power cut between the two renames
	fi
	if ! health_checks_run; then
		log "switched to ${version} without a health check (--root or --dry-run)"
		return 0
	fi
	mark_healthy "$version"
	# A release rolled back from by hand stays a rollback target until the target proved itself.
	[[ "$kind" != rollback ]] || mark_unhealthy "$fallback" "rolled back by hand"
	install_updater "$version"
	clear_pending
	log "release ${version} is healthy"
}

# resume_pending: finish a switch that was interrupted (power cut, crash, kill) before its health
# check decided: keep the target if it serves now, else go back to the release it replaced.
resume_pending() {
	local pending kind version fallback previous
	pending="$(pending_file)"
	if [[ ! -f "$pending" ]]; then
		log "no update is waiting for its health check"
		return 0
	fi
	kind="$(manifest_get "$pending" kind)" || kind=update
	version="$(manifest_get "$pending" version)"
	fallback="$(manifest_get "$pending" fallback)"
	previous="$(manifest_get "$pending" previous)"
	if ! health_checks_run; then
		log "the ${kind} to ${version} still waits for its health check; a run on the device finishes it"
		return 0
	fi
	if [[ "$(current_version)" != "$version" ]]; then
		log "the interrupted ${kind} to ${version} never switched (current is $(current_version)); putting previous back"
		restore_previous "$previous"
		clear_pending
		return 0
	fi
	log "the ${kind} to ${version} was interrupted before its health check finished; checking it now"
	if settle_switch "$kind" "$version" "$fallback" "$previous"; then
		log "the interrupted ${kind} to ${version} is complete"
		return 0
	fi
	die "the interrupted ${kind} to ${version} failed its health check and was rolled back; ${fallback} is serving. See 'journalctl -u pneumoedge.service -u pneumoedge-kiosk.service' for why ${version} did not start."
}

# version_older A B: release name A sorts before B (sort -V: 1.9 < 1.10, dates in order).
version_older() {
	local first
	first="$(printf '%s\n%s\n' "$1" "$2" | sort -V)"
	[[ "$1" != "$2" && "${first%%$'\n'*}" == "$1" ]]
}

# check_version RUNNING REINSTALL: the staged bundle against the running release. The same release
# again changes nothing; another bundle with the running release's name is always refused (the
# running release is never replaced in place), and an older one only with REINSTALL=1.
check_version() {
	local running="$1" reinstall="$2"
	[[ -n "$running" ]] || return 0
	if [[ "$BUNDLE_VERSION" == "$running" ]]; then
		cmp -s "${STAGED}/SHA256SUMS" "$(release_dir "$running")/SHA256SUMS" ||
			die "this bundle is named ${BUNDLE_VERSION}, like the running release, but its files differ: build it again with a new --version. Nothing was changed."
	elif version_older "$BUNDLE_VERSION" "$running"; then
		[[ "$reinstall" == 1 ]] ||
			die "release ${BUNDLE_VERSION} is older than the running ${running}; to go back to it on purpose, run again with --reinstall. Nothing was changed."
		warn "installing ${BUNDLE_VERSION}, older than the running ${running}, as asked (--reinstall)"
	fi
}
