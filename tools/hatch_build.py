"""Packs the offline tools from the repository's root into the wheel.

Only for a real wheel: an editable install puts the root on sys.path instead (`dev-mode-dirs`), so
the training environment runs the checkout's code, not a copy.
"""

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGES = ("lab", "trainer", "quantize", "fleet")


class ToolsFromTheRoot(BuildHookInterface):
    """Adds ../lab, ../trainer, ../quantize and ../fleet to a standard wheel."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "standard":
            build_data["force_include"].update({f"../{name}": name for name in PACKAGES})
