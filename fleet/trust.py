"""Which kiosks' signing keys `fleet pool` accepts: the trust file, a JSON object of kiosk id -> key
fingerprint ("SHA256:<hex>"), which the programme fills from its provisioning records.

A valid signature only proves that whoever holds the key in the export made it; the trust file says
which keys are the programme's kiosks. With trust on first use a kiosk not yet in the file is
recorded on its first export, and from then on only that key is accepted for its id.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from edge.files import atomic_write_text

log = logging.getLogger(__name__)


class TrustError(ValueError):
    """An export signed by a key the trust file does not hold for its kiosk; the message says what to do."""


@dataclass
class TrustedKiosks:
    """The trust file's kiosk keys, and the kiosks recorded on first use during this run."""

    path: Path
    first_use: bool = False
    keys: dict[str, str] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, first_use: bool = False) -> TrustedKiosks:
        """Read `path`; a missing file is an empty one only when trusting on first use."""
        if not path.is_file():
            if first_use:
                return cls(path, first_use)
            raise TrustError(
                f"the trust file {path} does not exist: write it from the provisioning records as "
                '{"KIOSK_ID": "SHA256:…"}, or pass --trust-on-first-use to start it'
            )
        try:
            keys = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TrustError(f"the trust file {path} is not JSON ({e})") from e
        if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
            raise TrustError(f'the trust file {path} must be one JSON object {{"KIOSK_ID": "SHA256:…"}}')
        return cls(path, first_use, keys)

    def check(self, name: str, kiosk: str, fingerprint: str) -> None:
        """Accept export `name` from `kiosk` signed by `fingerprint`, or raise TrustError saying why not."""
        known = self.keys.get(kiosk)
        if known == fingerprint:
            return
        refused = f"{name} is refused, nothing was pooled: kiosk {kiosk} signed it with the key {fingerprint}"
        if known is not None:
            raise TrustError(
                f"{refused}, but {self.path} trusts only {known} for that kiosk: a forged export, or the "
                "kiosk was re-provisioned (a new key); once the programme has confirmed the new key, "
                f"replace the kiosk's fingerprint in {self.path}"
            )
        if not self.first_use:
            raise TrustError(
                f"{refused}, which is not in {self.path}. If the kiosk's provisioning record shows this "
                f'fingerprint, add "{kiosk}": "{fingerprint}" to {self.path} (or pool with '
                "--trust-on-first-use to record new kiosks) and pool again"
            )
        self.keys[kiosk] = fingerprint
        self.added.append(kiosk)

    def save(self) -> None:
        """Write the kiosks recorded on first use into the trust file (nothing if none were)."""
        if not self.added:
            return
        atomic_write_text(self.path, json.dumps(self.keys, indent=2, sort_keys=True) + "\n", mode=0o644)
        for kiosk in self.added:
            log.warning("trusted kiosk %s on first use: key %s (%s)", kiosk, self.keys[kiosk], self.path)
        self.added.clear()
