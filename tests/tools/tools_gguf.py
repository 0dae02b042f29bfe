"""The embedded chat model with a chat template that offers functions (tests/tools/tools_template.jinja).

SmolLM2 speaks ChatML, the format of Hermes-style tool templates, so its weights read the template's
tokens as they are meant. The copy is made with the ``gguf`` package's own metadata rewriter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("tools_template.jinja")


def with_tools_template(source: Path, folder: Path) -> Path:
    """Write ``folder``/smollm2-tools.gguf: ``source`` with the tools template and its own name."""
    made = folder / "smollm2-tools.gguf"
    command = [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(source), str(made)]
    command += ["--chat-template-file", str(TEMPLATE), "--general-name", "SmolLM2 tools", "--force"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return made
