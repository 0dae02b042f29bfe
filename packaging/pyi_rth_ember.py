"""PyInstaller runtime hook of the installed Ember: runs before main.py, in the app and in every engine process.

- The embedded models live in ``models/`` beside the executable as plain package folders (a
  separate ``ember-models`` package on Linux, so the app can be updated without 600 MB of
  models): that folder goes on ``sys.path``, where Ember finds them as it does in a virtual
  environment (``importlib.util.find_spec``).
- Portable mode: a file named ``portable`` beside the executable keeps all of Ember's data
  (conversations, library, settings, caches, outputs) in ``data/`` beside it, for a USB stick.
"""

import os
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # the models' code is imported from /opt: nothing may be left there
_HERE = Path(sys.executable).resolve().parent
_MODELS = _HERE / "models"
if _MODELS.is_dir() and str(_MODELS) not in sys.path:
    sys.path.append(str(_MODELS))
if (_HERE / "portable").exists() and not os.environ.get("EMBER_HOME"):
    os.environ["EMBER_HOME"] = str(_HERE / "data")
os.environ.setdefault("EMBER_INSTALLED", str(_HERE))
