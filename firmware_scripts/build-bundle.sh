#!/usr/bin/env bash
# Build an offline PneumoEdge bundle on the office laptop: the project's own wheel, every wheel the
# target device needs, one model bundle, with SHA256SUMS, a VERSION and a MANIFEST, in one tarball.
set -Eeuo pipefail
SCRIPT_NAME=build-bundle
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/targets.sh
source "${FIRMWARE_DIR}/lib/targets.sh"
# shellcheck source=lib/signing.sh
source "${FIRMWARE_DIR}/lib/signing.sh"

REPO_DIR="$(cd "${FIRMWARE_DIR}/.." && pwd)"

usage() {
	cat <<USAGE
Usage: $0 [options]

Build dist/pneumoedge-<version>-<target>.tar.gz (+ .sha256, + .sig: its Ed25519 signature) for
devices without network. Needs internet for the wheels, unless --wheelhouse points at a folder
that has them (and the build backend in requirements-build.txt, to build the project's wheel). Devices install only bundles signed with the key they trust.

Options:
  --target PRESET      one of: ${TARGET_PRESETS} (default: pi64-bookworm)
                         pi64-bookworm  Pi 4/5/Zero 2 W, 64-bit Raspberry Pi OS 12, Python 3.11
                         pi64-trixie    Pi 4/5, 64-bit Raspberry Pi OS 13, Python 3.13
                         pi32-bookworm  32-bit Raspberry Pi OS 12 (e.g. Pi Zero 2 W), Python 3.11,
                                        tflite-runtime 2.14 + numpy<2, wheels from piwheels
                         local          this machine's CPU and BUILD_PYTHON's version (tests)
  --model DIR          model bundle folder (default: models/mobilenetv2-int8)
  --output DIR         where the tarball goes (default: dist)
  --version NAME       release name (default: UTC date and git commit, e.g. 2026.11.28-0512-g6c42540)
  --requirements FILE  override the target's requirements file (default: requirements-edge.txt,
                       or requirements-edge-tflite-runtime.txt for pi32-bookworm)
  --wheelhouse DIR     take the wheels from DIR only (pip --no-index); no internet needed
  --signing-key FILE   the office's Ed25519 private key (PEM) that signs the bundle (default:
                       SIGNING_KEY from the config); required except for --dry-run
  --debs DIR           also ship the .deb files in DIR (e.g. cage, chromium for a Lite image);
                       provision.sh installs them without network
  --config FILE        config file (default: firmware_scripts/pneumoedge.conf)
  --allow-dirty        build from a checkout with uncommitted changes to tracked files (their
                       working copies are packed and MANIFEST says git_tree=dirty); for test
                       builds only. Without it such a checkout is refused
  --dry-run            check the inputs and print what would be done

What is packed: the committed files of the checkout (git archive HEAD), never untracked or
ignored files (keys, local env files); the model folder's files when --model is outside the
checkout. Any file holding a PEM private key (also inside a wheel) stops the build.

Reproducible: the same inputs and --version give the same tarball. Its timestamps (file times,
MANIFEST created_utc) are SOURCE_DATE_EPOCH when set, else the time of the git commit.
  -h, --help           show this help

Log: <output>/build-bundle.log
USAGE
}

TARGET=pi64-bookworm
MODEL_DIR="${REPO_DIR}/models/mobilenetv2-int8"
OUTPUT_DIR="${REPO_DIR}/dist"
VERSION=""
REQUIREMENTS=""
WHEELHOUSE=""
DEBS_DIR=""
SIGNING_KEY_ARG=""
CONFIG_ARG=""
ALLOW_DIRTY=0

parse_args() {
	while (($#)); do
		case "$1" in
		--target) TARGET="${2:?--target needs a preset}" && shift ;;
		--model) MODEL_DIR="${2:?--model needs a folder}" && shift ;;
		--output) OUTPUT_DIR="${2:?--output needs a folder}" && shift ;;
		--version) VERSION="${2:?--version needs a name}" && shift ;;
		--requirements) REQUIREMENTS="${2:?--requirements needs a file}" && shift ;;
		--wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a folder}" && shift ;;
		--debs) DEBS_DIR="${2:?--debs needs a folder}" && shift ;;
		--signing-key) SIGNING_KEY_ARG="${2:?--signing-key needs a file}" && shift ;;
		--config) CONFIG_ARG="${2:?--config needs a file}" && shift ;;
		--allow-dirty) ALLOW_DIRTY=1 ;;
		--dry-run) DRY_RUN=1 ;;
		-h | --help) usage && exit 0 ;;
		*) die "unknown argument $1; see $0 --help" ;;
		esac
		shift
	done
}

MODEL_NAME=""
MODEL_SHA256=""
BUILD_EPOCH=""
RUNTIME_MODULE=""
BUNDLE_NAME=""
SIGNING_PUBKEY=""
# The committed tree (export_source): the scripts, requirements and the app's wheel come from it.
SOURCE_DIR=""
GIT_COMMIT=""
GIT_TREE=clean

# export_source: a copy of the commit to build from. A checkout whose tracked files differ from
# HEAD is refused unless --allow-dirty (then the tracked files' working copies are taken); untracked
# and ignored files are never taken, so a stray key or env file cannot ship.
export_source() {
	local changes
	GIT_COMMIT="$(git -C "$REPO_DIR" rev-parse --verify HEAD 2>/dev/null)" ||
		die "${REPO_DIR} is not a git checkout with a commit; bundles are built from a commit"
	changes="$(git -C "$REPO_DIR" status --porcelain --untracked-files=no)"
	SOURCE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/pneumoedge-source.XXXXXX")"
	cleanup_on_exit "$SOURCE_DIR"
	if [[ -z "$changes" ]]; then
		git -C "$REPO_DIR" archive --format=tar HEAD | tar -xf - -C "$SOURCE_DIR"
		log "building from commit ${GIT_COMMIT} (git archive)"
		return 0
	fi
	if [[ "$ALLOW_DIRTY" != 1 ]]; then
		[[ "$DRY_RUN" == 1 ]] ||
			die "the checkout has uncommitted changes to tracked files (git status: $(head -3 <<<"$changes" | tr '\n' ' ')...): commit them, so the bundle is exactly a commit, or pass --allow-dirty for a test build"
		warn "the checkout has uncommitted changes; a real build refuses them without --allow-dirty"
	fi
	GIT_TREE=dirty
	(cd "$REPO_DIR" && git ls-files -z --cached | while IFS= read -r -d '' file; do
		[[ ! -f "$file" ]] || printf '%s\0' "$file"
	done) | tar -C "$REPO_DIR" --null -T - -cf - | tar -xf - -C "$SOURCE_DIR"
	warn "building from the working copies of the tracked files of ${GIT_COMMIT} (--allow-dirty): MANIFEST says git_tree=dirty"
}

# source_path PATH: PATH inside the exported commit when it lies in the checkout, else PATH itself.
source_path() {
	local path
	path="$(realpath -m "$1")"
	if [[ "$path" == "$REPO_DIR" || "$path" == "$REPO_DIR"/* ]]; then
		printf '%s%s' "$SOURCE_DIR" "${path#"$REPO_DIR"}"
	else
		printf '%s' "$path"
	fi
}

check_inputs() {
	need tar gzip sha256sum find sort git date openssl realpath "$BUILD_PYTHON"
	export_source
	check_signing_key
	set_target "$TARGET"
	REQUIREMENTS="$(source_path "${REQUIREMENTS:-${REPO_DIR}/${TARGET_REQUIREMENTS}}")"
	MODEL_DIR="$(source_path "$MODEL_DIR")"
	[[ -f "$REQUIREMENTS" ]] || die "requirements file ${REQUIREMENTS} does not exist (is it committed?)"
	[[ -d "$MODEL_DIR" ]] || die "model folder ${MODEL_DIR} does not exist (is it committed?)"
	[[ -d "${SOURCE_DIR}/edge" ]] || die "${REPO_DIR}/edge is missing; run this from a PneumoEdge checkout"
	[[ -z "$WHEELHOUSE" || -d "$WHEELHOUSE" ]] || die "--wheelhouse ${WHEELHOUSE} is not a folder"
	if [[ -n "$DEBS_DIR" ]] && ! compgen -G "${DEBS_DIR}/*.deb" >/dev/null; then
		die "--debs ${DEBS_DIR} holds no .deb files"
	fi
	"$BUILD_PYTHON" -m pip --version >/dev/null 2>&1 || die "${BUILD_PYTHON} has no pip; set BUILD_PYTHON to a Python with pip"
	# The model is checked with the kiosk's own reader, so a bad model never leaves the office.
	local info
	info="$(PYTHONPATH="$SOURCE_DIR" "$BUILD_PYTHON" -c \
		'import sys; from edge.bundle import load_bundle; b = load_bundle(sys.argv[1]); print(b.name, b.model_sha256)' \
		"$MODEL_DIR")" || die "model bundle ${MODEL_DIR} failed verification (message above); pick a verified bundle with --model"
	read -r MODEL_NAME MODEL_SHA256 <<<"$info"
	check_model_runs
	is_safe_name "$MODEL_NAME" || die "model name '${MODEL_NAME}' in ${MODEL_DIR}/bundle.json is not a plain name"
	if grep -qiE '^tflite[-_]runtime' "$REQUIREMENTS"; then
		RUNTIME_MODULE=tflite_runtime.interpreter
	elif grep -qiE '^ai[-_]edge[-_]litert' "$REQUIREMENTS"; then
		RUNTIME_MODULE=ai_edge_litert.interpreter
	else
		RUNTIME_MODULE=none
		warn "${REQUIREMENTS} names no TFLite runtime (ai-edge-litert or tflite-runtime): the kiosk will not score"
	fi
	BUILD_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$REPO_DIR" log -1 --format=%ct 2>/dev/null || date +%s)}"
	[[ "$BUILD_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH='${BUILD_EPOCH}' must be seconds since 1970"
	if [[ -z "$VERSION" ]]; then
		VERSION="$(date -u +%Y.%m.%d-%H%M)-g$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	fi
	is_safe_name "$VERSION" || die "--version '${VERSION}' must be letters, digits, '.', '_', '+' or '-'"
	BUNDLE_NAME="pneumoedge-${VERSION}-${TARGET}"
	log "target ${TARGET}: ${TARGET_ARCH}, Python ${TARGET_PYTHON}, $(basename "$REQUIREMENTS"), runtime ${RUNTIME_MODULE%%.*}"
	log "model ${MODEL_NAME} (sha256 ${MODEL_SHA256}); release ${VERSION}"
}

# check_model_runs: load the model with the kiosk's own screener and TFLite runtime and score one
# blank image, so a model that verifies but cannot run never leaves the office.
check_model_runs() {
	PYTHONPATH="$SOURCE_DIR" "$BUILD_PYTHON" -c '
import sys
import numpy as np
from edge.screener import Screener
model = Screener.from_path(sys.argv[1]).model
model.run(np.zeros(model.input_shape[1:], np.uint8))
' "$MODEL_DIR" ||
		die "model bundle ${MODEL_DIR} does not load or run with the kiosk's TFLite runtime (message above). BUILD_PYTHON needs the kiosk's requirements (pip install -r requirements-edge.txt); pick a working bundle with --model"
	log "the model loads and runs with the kiosk's runtime"
}

# check_signing_key: read the signing key before the long work (a wrong passphrase fails now),
# and keep its public half to check the signature it makes.
check_signing_key() {
	SIGNING_KEY="${SIGNING_KEY_ARG:-$SIGNING_KEY}"
	if [[ -z "$SIGNING_KEY" ]]; then
		[[ "$DRY_RUN" == 1 ]] ||
			die "no signing key: pass --signing-key FILE (or set SIGNING_KEY); devices refuse unsigned bundles. Making a key: docs/deployment.md, 'Signing keys'"
		warn "no --signing-key: a real build would stop here"
		return 0
	fi
	SIGNING_PUBKEY="$(mktemp)"
	cleanup_on_exit "$SIGNING_PUBKEY"
	load_signing_key "$SIGNING_KEY" "$SIGNING_PUBKEY"
	log "signing with ${SIGNING_KEY}, public key $(key_fingerprint "$SIGNING_PUBKEY")"
}

WORK=""
TOP=""

assemble() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would assemble ${BUNDLE_NAME}: $(basename "$REQUIREMENTS"), models/${MODEL_NAME}, firmware_scripts/${DEBS_DIR:+, debs}"
		return 0
	fi
	mkdir -p "$OUTPUT_DIR"
	WORK="$(mktemp -d "${OUTPUT_DIR}/.build.XXXXXX")"
	cleanup_on_exit "$WORK"
	TOP="${WORK}/${BUNDLE_NAME}"
	mkdir -p "${TOP}/app" "${TOP}/models" "${TOP}/wheels"
	install -m 0644 "$REQUIREMENTS" "${TOP}/app/requirements.txt"
	copy_tree "$MODEL_DIR" "${TOP}/models/${MODEL_NAME}"
	copy_tree "${SOURCE_DIR}/firmware_scripts" "${TOP}/firmware_scripts"
	if [[ -n "$DEBS_DIR" ]]; then
		mkdir -p "${TOP}/debs"
		install -m 0644 "$DEBS_DIR"/*.deb "${TOP}/debs/"
	fi
}

# copy_tree SRC DEST: copy a source folder without caches, bytecode or hidden files.
copy_tree() {
	local src="$1" dest="$2"
	mkdir -p "$dest"
	(cd "$src" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*/.*' -print0) |
		while IFS= read -r -d '' file; do
			install -D -m "$([[ -x "${src}/${file}" ]] && echo 0755 || echo 0644)" "${src}/${file}" "${dest}/${file}"
		done
}

# build_app_wheel: the project's own wheel (edge, its templates, the shipped int8 model), into the
# bundle's wheels like any other; reproducible (SOURCE_DATE_EPOCH) and pure Python.
build_app_wheel() {
	local args=(wheel --disable-pip-version-check --no-deps --quiet -w "${TOP:-<bundle>}/wheels")
	[[ -z "$WHEELHOUSE" ]] || args+=(--no-index --find-links "$WHEELHOUSE")
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would run: $(_quote "$BUILD_PYTHON" -m pip "${args[@]}" "<commit of ${REPO_DIR}>")"
		return 0
	fi
	SOURCE_DATE_EPOCH="$BUILD_EPOCH" "$BUILD_PYTHON" -m pip "${args[@]}" "$SOURCE_DIR" >&2 ||
		die "pip could not build the PneumoEdge wheel from ${REPO_DIR} (message above); with --wheelhouse, the folder needs the build backend: pip download -r requirements-build.txt -d ${WHEELHOUSE}"
	log "built $(basename "$(find "${TOP}/wheels" -name 'pneumoedge-*.whl')")"
}

download_wheels() {
	local args=(download --disable-pip-version-check --only-binary=:all: -r "$REQUIREMENTS")
	if [[ "$TARGET" != local ]]; then
		local abi="cp${TARGET_PYTHON/./}" platform
		args+=(--python-version "$TARGET_PYTHON" --implementation cp --abi "$abi" --abi abi3 --abi none)
		for platform in "${TARGET_PLATFORMS[@]}"; do args+=(--platform "$platform"); done
	fi
	if [[ -n "$WHEELHOUSE" ]]; then
		args+=(--no-index --find-links "$WHEELHOUSE")
	elif [[ -n "$TARGET_EXTRA_INDEX" ]]; then
		args+=(--extra-index-url "$TARGET_EXTRA_INDEX")
	fi
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would run: $(_quote "$BUILD_PYTHON" -m pip "${args[@]}" -d "<bundle>/wheels")"
		return 0
	fi
	"$BUILD_PYTHON" -m pip "${args[@]}" --quiet -d "${TOP}/wheels" >&2 ||
		die "pip could not get every wheel for ${TARGET}; check the internet connection or the --wheelhouse (it must hold wheels for ${TARGET_ARCH}, Python ${TARGET_PYTHON})"
	log "$(find "${TOP}/wheels" -name '*.whl' | wc -l) wheels, $(du -sh "${TOP}/wheels" | cut -f1)"
}

write_metadata() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would write VERSION, MANIFEST and SHA256SUMS"
		return 0
	fi
	printf '%s\n' "$VERSION" >"${TOP}/VERSION"
	{
		echo "version=${VERSION}"
		echo "target=${TARGET}"
		echo "arch=${TARGET_ARCH}"
		echo "python_version=${TARGET_PYTHON}"
		echo "model_name=${MODEL_NAME}"
		echo "model_sha256=${MODEL_SHA256}"
		echo "runtime_module=${RUNTIME_MODULE}"
		echo "requirements=$(basename "$REQUIREMENTS")"
		echo "git_commit=${GIT_COMMIT}"
		echo "git_tree=${GIT_TREE}"
		echo "created_utc=$(date -u -d "@${BUILD_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
	} >"${TOP}/MANIFEST"
	refuse_private_keys
	(cd "$TOP" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) >"${TOP}/SHA256SUMS"
	log "SHA256SUMS lists $(wc -l <"${TOP}/SHA256SUMS") files"
}

# refuse_private_keys: no file of the bundle, nor any file inside one of its wheels, may hold a
# PEM private key (the office's signing key must never reach a device).
refuse_private_keys() {
	local found
	found="$("$BUILD_PYTHON" - "$TOP" <<'PY'
import re, sys, zipfile
from pathlib import Path

PEM = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
top = Path(sys.argv[1])
for path in sorted(p for p in top.rglob("*") if p.is_file()):
    name = str(path.relative_to(top))
    if PEM.search(path.read_bytes()):
        print(name)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            for member in wheel.namelist():
                if PEM.search(wheel.read(member)):
                    print(f"{name}:{member}")
PY
)" || die "could not scan the bundle for private keys (message above)"
	[[ -z "$found" ]] ||
		die "the bundle would hold a PEM private key: $(tr '\n' ' ' <<<"$found")- remove it from the commit (or the model folder) and build again. Nothing was written."
	log "no private key in the bundle"
}

pack() {
	local tarball="${OUTPUT_DIR}/${BUNDLE_NAME}.tar.gz"
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would write ${tarball}, ${tarball}.sha256 and ${tarball}.sig"
		return 0
	fi
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@${BUILD_EPOCH}" \
		-C "$WORK" -czf "${WORK}/bundle.tar.gz" "$BUNDLE_NAME"
	mv -f "${WORK}/bundle.tar.gz" "$tarball"
	(cd "$OUTPUT_DIR" && sha256sum "$(basename "$tarball")") >"${tarball}.sha256.tmp"
	mv -f "${tarball}.sha256.tmp" "${tarball}.sha256"
	sign_file "${tarball}.sha256" "${tarball}.sig.tmp"
	verify_signature "$SIGNING_PUBKEY" "${tarball}.sha256" "${tarball}.sig.tmp" ||
		die "the signature just made does not verify; this is a bug in the script"
	mv -f "${tarball}.sig.tmp" "${tarball}.sig"
	log "signed: ${tarball}.sig ($(key_fingerprint "$SIGNING_PUBKEY"))"
	log "bundle: ${tarball} ($(du -h "$tarball" | cut -f1)), sha256 $(cut -d' ' -f1 "${tarball}.sha256")"
	# Machine-readable last line for scripts and tests.
	printf '%s\n' "$tarball"
}

main() {
	init_common
	parse_args "$@"
	load_config "$CONFIG_ARG"
	if [[ "$DRY_RUN" != 1 ]]; then
		mkdir -p "$OUTPUT_DIR"
		OUTPUT_DIR="$(cd "$OUTPUT_DIR" && pwd)"
	fi
	open_log "${OUTPUT_DIR}/build-bundle.log"
	step 01 "Check the inputs" check_inputs
	step 02 "Assemble the requirements, model and scripts" assemble
	step 03 "Download the wheels" download_wheels
	step 04 "Build the PneumoEdge wheel" build_app_wheel
	step 05 "Write VERSION, MANIFEST, SHA256SUMS" write_metadata
	step 06 "Pack and sign the tarball" pack
}

main "$@"
