"""An implausible clock (earlier than the release's build time) stops provisioning and updates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.firmware.conftest import (
    SigningKey,
    provision_rooted,
    run_script,
    script_env,
    signed_rebuild,
    trusted_pubkey,
)


@pytest.fixture
def future_bundle(tiny_dep_bundles: dict[str, Path], tmp_path: Path, signing_key: SigningKey) -> Path:
    """Release 2.0.0 as if built in 2099: this machine's clock is before its build time."""

    def built_in_2099(top: Path) -> None:
        manifest = top / "MANIFEST"
        lines = [
            "created_utc=2099-01-01T00:00:00Z" if line.startswith("created_utc=") else line
            for line in manifest.read_text().splitlines()
        ]
        manifest.write_text("\n".join(lines) + "\n")

    return signed_rebuild(tiny_dep_bundles["2.0.0"], tmp_path / "future.tar.gz", built_in_2099, signing_key)


def test_provisioning_refuses_a_clock_before_the_build_time(future_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    env = script_env(tmp_path)
    result = run_script("provision.sh", "--root", root, "--pubkey", trusted_pubkey(), future_bundle, env=env)
    assert result.returncode != 0
    assert "before this release was built (2099-01-01T00:00:00Z)" in result.stderr
    assert "--set-time" in result.stderr
    assert not (root / "opt").exists()

    set_time = run_script(
        "provision.sh",
        "--root",
        root,
        "--pubkey",
        trusted_pubkey(),
        "--set-time",
        "2099-06-01 12:00",
        future_bundle,
        env=env,
    )
    assert set_time.returncode == 0, set_time.stderr
    assert "would run (skipped under --root" in set_time.stderr and "date -s @" in set_time.stderr


def test_update_refuses_a_clock_before_the_build_time(
    future_bundle: Path, tiny_dep_bundles: dict[str, Path], tmp_path: Path
) -> None:
    root, env = provision_rooted(tmp_path, tiny_dep_bundles["1.0.0"])
    result = run_script("update.sh", "--root", root, future_bundle, env=env)
    assert result.returncode != 0
    assert "before this release was built" in result.stderr
    assert (root / "opt/pneumoedge/current").readlink() == Path("releases/1.0.0")
