"""Which build of Ember this is: an installed CPU, CUDA or Metal build, or a source checkout.

An installer's freeze (packaging/ember.spec) writes ``ember-variant.json`` into the bundle;
a checkout run from its virtual environment has none and says so. The self-test and the
Settings page show this, so a person (and a bug report) knows which build ran.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

VARIANT_FILE = "ember-variant.json"
VARIANTS = {"cpu": "CPU build", "cuda": "CUDA build", "metal": "Metal build"}


@dataclass(frozen=True)
class BuildInfo:
    """``variant`` is cpu, cuda or metal for an installed build, "source" for a checkout."""

    variant: str
    installed: bool
    location: str  # the installed app's folder, or the checkout's Python environment
    portable: bool  # data kept beside the app (a file named ``portable`` there)

    def describe(self) -> str:
        if not self.installed:
            return f"from source (Python environment {self.location})"
        kind = VARIANTS.get(self.variant, f"{self.variant} build")
        return f"installed {kind}, {self.location}" + (", portable: data beside the app" if self.portable else "")


def package_version(package: str = "ember-studio") -> str:
    """The installed version of ``package`` (Ember by default), or "not installed"."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def build_info() -> BuildInfo:
    """What this process is running: read once from the bundle, or the checkout's interpreter."""
    bundle = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or bundle is None:
        return BuildInfo("source", False, sys.prefix, False)
    app = Path(sys.executable).resolve().parent
    try:
        variant = str(json.loads((Path(bundle) / VARIANT_FILE).read_text(encoding="utf-8"))["variant"])
    except (OSError, ValueError, KeyError, TypeError):
        variant = "unknown"  # a bundle built without the spec's file: say so rather than guess
    portable = (app / "portable").exists() and os.environ.get("EMBER_HOME") == str(app / "data")
    return BuildInfo(variant, True, str(app), portable)
