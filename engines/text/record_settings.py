"""What a text record keeps of the settings that made a reply, for the engine and a salvaged reply alike."""

from __future__ import annotations

from engines.text.requests import ChatRequest, CompletionRequest


def kernels_of(cpu_variant: str) -> str:
    """The llama.cpp kernels a reply was computed with, as a record names them."""
    return f"llama.cpp {cpu_variant} kernels" if cpu_variant else "llama.cpp built-in kernels"


def settings_of(
    request: ChatRequest | CompletionRequest, seed: int | None, context_tokens: int, threads: int, made: dict
) -> dict:
    """What a text record keeps of the settings that made it (the engine's and a salvaged reply's alike).

    ``made`` says where (engines/reproducibility.py): the same settings and seed make the same reply there.
    """
    # Stop strings and a JSON schema change the reply, so a record that has them keeps them.
    shaped = {"stop": list(request.stop)} if request.stop else {}
    if request.json_schema:
        shaped["json_schema"] = request.json_schema
    return {
        **shaped,
        **request.sampling.as_dict(),
        "seed": seed,
        "context_tokens": context_tokens,
        "threads": threads,
        "mode": getattr(request, "mode", "completion"),
        "system_prompt": getattr(request, "system_prompt", ""),
        "made_on": made,
    }
