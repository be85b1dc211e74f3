# shellcheck shell=bash
# Ed25519 bundle signatures with the openssl command line (OpenSSL >= 3.0: Raspberry Pi OS 12 and
# later have it, because ca-certificates depends on it, so a freshly flashed device can check a
# signature before it runs anything from a bundle). build-bundle.sh signs the tarball's .sha256
# line with the office's private key; provision.sh and update.sh check that signature with the
# public key installed on the device. Sourced after common.sh.

# is_ed25519_pubkey FILE: FILE is an Ed25519 public key in PEM (what `openssl pkey -pubout` writes).
is_ed25519_pubkey() {
	local text
	text="$(openssl pkey -pubin -in "$1" -noout -text 2>/dev/null)" || return 1
	[[ "$text" == "ED25519 Public-Key:"* ]]
}

# key_fingerprint PUBKEY: "SHA256:<hex>" of the public key (DER), to compare keys by eye.
key_fingerprint() {
	local digest
	digest="$(openssl pkey -pubin -in "$1" -outform DER | sha256sum)" || return 1
	printf 'SHA256:%s\n' "${digest%% *}"
}

# verify_signature PUBKEY FILE SIGNATURE: the Ed25519 signature of FILE's bytes checks out.
verify_signature() {
	openssl pkeyutl -verify -pubin -inkey "$1" -rawin -in "$2" -sigfile "$3" >/dev/null 2>&1
}

# SIGNING_PEM holds the decrypted private key between load_signing_key and sign_file, so that a
# passphrase-protected key asks for its passphrase once; it is never written to disk.
SIGNING_PEM=""

# load_signing_key FILE PUBKEY_OUT: read the private key (openssl asks for its passphrase, if it
# has one), check that it is Ed25519 and write its public half to PUBKEY_OUT.
load_signing_key() {
	local file="$1" pubkey_out="$2"
	[[ -r "$file" ]] || die "signing key ${file} is not readable; see 'Signing keys' in docs/deployment.md"
	SIGNING_PEM="$(openssl pkey -in "$file")" ||
		die "openssl cannot read the signing key ${file} (wrong passphrase, or not a PEM private key)"
	openssl pkey -pubout -out "$pubkey_out" <<<"$SIGNING_PEM"
	is_ed25519_pubkey "$pubkey_out" ||
		die "${file} is not an Ed25519 key; make one with 'openssl genpkey -algorithm ed25519' (docs/deployment.md)"
}

# sign_file FILE SIGNATURE: sign FILE with the key load_signing_key read.
sign_file() {
	openssl pkeyutl -sign -rawin -inkey <(printf '%s\n' "$SIGNING_PEM") -in "$1" -out "$2"
}
