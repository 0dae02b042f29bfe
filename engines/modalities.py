"""The one list of modalities Ember runs. A new modality is a package under engines/ plus a line here.

:func:`register` adds one at run time (a plugin, or a test's throwaway modality); so does
``EMBER_MODALITIES="package.module:NAME,..."`` for every process that imports this module,
the engine processes included. The Studio, main.py, the catalog, the inspector, the fit
estimate and the enforcement test all read :func:`modalities`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from engines.dictation.modality import DICTATION
from engines.diffusion.modality import IMAGE
from engines.errors import EmberError
from engines.evaluation.clip import CLIP_KIND
from engines.modality import Modality, ModelKind
from engines.music.modality import MUSIC
from engines.speech.modality import SPEECH
from engines.text.modality import TEXT
from engines.upscale.modality import UPSCALE

_REGISTERED: list[Modality] = [TEXT, IMAGE, UPSCALE, SPEECH, DICTATION, MUSIC]
_lock = threading.Lock()

# Kinds whose modality has not landed yet: the catalog already lists such models. The speech and
# upscaling modalities take them over (a registered modality's kind of the same name wins).
UPCOMING_KINDS: tuple[ModelKind, ...] = ()

# Kinds of models that serve a tool of Ember rather than a modality: the catalog offers them and the model
# library finds them like any other. A CLIP model scores images against their prompt in ``evaluate image``.
TOOL_KINDS: tuple[ModelKind, ...] = (CLIP_KIND,)


def modalities() -> tuple[Modality, ...]:
    """Every registered modality, in the order they were registered."""
    with _lock:
        return tuple(_REGISTERED)


def register(modality: Modality) -> Callable[[], None]:
    """Add ``modality``; returns a function that removes it again.

    Raises EmberError when a name, request type, load-options type, model kind or command
    is taken by another modality.
    """
    with _lock:
        for other in _REGISTERED:
            clash = (
                (other.name == modality.name and "name")
                or (set(other.requests) & set(modality.requests) and "request type")
                or (other.options is modality.options and "load-options type")
                or ({k.kind for k in other.kinds} & {k.kind for k in modality.kinds} and "model kind")
                or ({c.name for c in other.commands} & {c.name for c in modality.commands} and "command")
            )
            if clash:
                raise EmberError(f"The {modality.name} modality's {clash} is taken by the {other.name} modality.")
        _REGISTERED.append(modality)

    def unregister() -> None:
        with _lock:
            if modality in _REGISTERED:
                _REGISTERED.remove(modality)

    return unregister


def modality_of(request: Any) -> Modality | None:
    """The modality that runs ``request``, or None."""
    kind = type(request)
    return next((m for m in modalities() if kind in m.requests), None)


def modality_for_options(options: Any) -> Modality | None:
    """The modality whose engines load with ``options``, or None."""
    return next((m for m in modalities() if isinstance(options, m.options)), None)


def model_kinds() -> tuple[ModelKind, ...]:
    """Every model kind Ember knows: those of the registered modalities, in their order, then the
    :data:`TOOL_KINDS` and the :data:`UPCOMING_KINDS` that no registered modality declares."""
    registered = tuple(kind for m in modalities() for kind in m.kinds)
    taken = {kind.kind for kind in registered}
    return registered + tuple(kind for kind in (*TOOL_KINDS, *UPCOMING_KINDS) if kind.kind not in taken)


def model_kind(kind: str) -> ModelKind | None:
    """The model kind called ``kind`` (as :func:`model_kinds` has it), or None."""
    return next((k for k in model_kinds() if k.kind == kind), None)


def media_of(request: Any) -> str:
    """What ``request`` makes ("text", "image", "audio"); "text" for requests no modality runs."""
    modality = modality_of(request)
    return modality.media if modality is not None else "text"


def _register_from_environment() -> None:
    """Register the modalities ``EMBER_MODALITIES`` names (module:attribute, comma-separated)."""
    import importlib
    import os

    for spec in filter(None, (part.strip() for part in os.environ.get("EMBER_MODALITIES", "").split(","))):
        module_name, _, attribute = spec.partition(":")
        try:
            modality = getattr(importlib.import_module(module_name), attribute or "MODALITY")
        except (ImportError, AttributeError) as exc:
            raise EmberError(f"EMBER_MODALITIES names '{spec}', which cannot be loaded ({exc}).") from None
        if modality not in _REGISTERED:
            register(modality)


_register_from_environment()
