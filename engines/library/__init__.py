"""The library of everything Ember made: see engines/library/store.py."""

from engines.library.adopt import KINDS
from engines.library.store import Library, LibraryItem, RepairReport

__all__ = ["KINDS", "Library", "LibraryItem", "RepairReport"]
