"""Errors written for the person who reads them."""

from __future__ import annotations


class EmberError(Exception):
    """An error whose message is meant for a person: what happened, and what to do.

    Engines raise it for every failure they can foresee (a corrupt model file, a
    prompt longer than the context, a model that does not fit in memory). The job
    queue shows its message as it is.
    """


class ModelFileError(EmberError):
    """A model file that cannot be used: missing, truncated, corrupt or unsupported."""


class ContextOverflowError(EmberError):
    """A request that cannot fit in the model's context window."""


class OutOfMemoryError(EmberError):
    """A model or request that does not fit in the memory this machine has free."""


class Cancelled(Exception):
    """Raised inside an engine when its job was cancelled; the queue ends the job as cancelled.

    ``partial`` holds what was delivered before the stop (through the output
    pipeline), or None.
    """

    def __init__(self, partial: object = None) -> None:
        super().__init__("cancelled")
        self.partial = partial


class OutputBlocked(Exception):
    """Raised by the output pipeline when a stage withholds an output.

    ``decision`` says which stage, which category and why, without the content.
    """

    def __init__(self, decision: object) -> None:
        super().__init__(str(decision))
        self.decision = decision


def describe_unexpected(exc: BaseException, what: str) -> str:
    """Return a one-paragraph message for an error nobody foresaw.

    It names the component and the error so that a bug report is useful, and tells
    the person that the app itself is fine and what to try.
    """
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    summary = f"{name}: {detail}" if detail else name
    return (
        f"The {what} stopped with an unexpected error ({summary}). "
        "Nothing else was affected; try again, and if it happens again please report it."
    )
