"""`python -m edge identity`: this kiosk's export identity, for the programme's provisioning record.

`fleet pool` trusts an export only when its kiosk id and signing-key fingerprint are in the
programme's trust file (docs/training.md, "Signed exports and the trust file"). The technician runs
this once after provisioning and copies the printed line into the kiosk's record, so the first
export is trusted without trust-on-first-use. The secret and the private key are made here if the
kiosk has none yet (the same files the first export would make) and never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge import kiosk_settings, signing
from edge.webapp.records import export


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "identity",
        help="print this kiosk's id and export-signing key fingerprint (the trust-file line)",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(kiosk_settings.DEFAULTS["DATA_DIR"]),
        help="the kiosk's data folder (on a device: /var/lib/pneumoedge)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        kiosk = export.kiosk_id(export.load_or_create_export_key(args.data_dir))
        key = export.load_or_create_signing_key(args.data_dir)
        entry = {kiosk: signing.fingerprint(signing.public_key(key))}
    except (OSError, signing.SigningError) as e:
        sys.exit(f"identity: {e}")
    print(json.dumps(entry)[1:-1])  # "id": "SHA256:...", ready for the trust file's object
    return 0
