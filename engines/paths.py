"""Where Ember keeps its files: the platform's user folders, or ``EMBER_HOME`` when set."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Ember"


def data_dir() -> Path:
    """Return (creating it) the folder for conversations, records and settings.

    ``EMBER_HOME`` overrides the platform's user data folder; tests and portable
    installs use it.
    """
    home = os.environ.get("EMBER_HOME")
    path = Path(home) / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Return (creating it) the folder for files Ember can rebuild (assembled models, hashes)."""
    home = os.environ.get("EMBER_HOME")
    path = Path(home) / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME, False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_path() -> Path:
    return data_dir() / "ember.sqlite3"


def outputs_dir(create: bool = True) -> Path:
    """Return (creating it, unless ``create`` is False) the folder where made images and clips are saved.

    ``EMBER_OUTPUTS`` overrides it; by default it is ``Ember`` in the person's Pictures
    folder, or ``outputs`` in the data folder under ``EMBER_HOME``. Raises OSError when it
    must be made and cannot be (a drive that is not there).
    """
    override = os.environ.get("EMBER_OUTPUTS")
    if override:
        path = Path(override)
    elif os.environ.get("EMBER_HOME"):
        path = data_dir() / "outputs"
    else:
        path = Path(platformdirs.user_pictures_dir()) / APP_NAME
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
