"""The optional guard model: Llama Guard 3 or ShieldGemma, run by the text engine as a judge.

A person who installs a guard GGUF gets a second, stronger opinion on prompts and
outputs than the rules and the small classifier give. Ember renders the prompt
format from the model's card, asks ``LlamaEngine.judge`` for a greedy answer
constrained by a GBNF grammar (so even a model that is not a guard, such as the
SmolLM2 the tests use as a stand-in, gives an answer Ember can read), and turns
the answer into findings.

Prompt formats (the model cards, and the chat templates in the models' repositories):

- Llama Guard 3 8B: the Llama 3 user turn holding "Task: Check if there is unsafe
  content in '{User|Agent}' messages ...", the categories S1..S14, the conversation,
  and the answer instructions; the answer is ``safe`` or ``unsafe`` and a line of
  violated categories (``S1,S10``). The model usually starts its answer with a blank
  line, which the grammar allows. (The 8B chat template puts a space before
  ``<|begin_of_text|>``; the model card's prompt does not, and neither does Ember,
  so that llama.cpp does not add a second BOS.)
- Llama Guard 3 1B: the same with S1..S13 (no code-interpreter category) and a
  space before ``<|eot_id|>``, as its chat template writes it.
- ShieldGemma: "You are a policy expert trying to help determine whether a user
  prompt is in violation of the defined safety policies." with the text between
  Gemma's ``<start_of_turn>``/``<end_of_turn>`` markers and one policy a call; the
  answer is ``Yes`` (violates) or ``No``. Four calls a text, which share their
  prefix in llama.cpp's cache.

What an answer means (scores feed the Policy's thresholds: strict 0.35, standard
0.6, minimal 0.9; minors 0.2 always):

- a listed Llama Guard violation scores 0.95 in its category, so every level blocks it;
- S5 defamation scores 0.7 as HATE: blocked at standard and strict, not at minimal,
  because whether a claim is defamatory is beyond what the model can know;
- S6 specialised advice and S7 privacy score 0.3 as DANGEROUS: recorded, never
  blocking (medical, legal or financial questions are legitimate uses);
- S8 intellectual property and S13 elections are not Ember's categories: no finding;
- ShieldGemma's "Yes" scores 0.9 in the policy's category ("Yes" is the model's
  argmax; its probability is not available through the judge).

A text longer than the guard's context is judged in overlapping windows; each
finding's ``start``/``end`` are the window it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from engines.errors import Cancelled, ContextOverflowError, EmberError, describe_unexpected
from engines.models.embedded import resolve_model_path
from engines.registry import ModelRegistry
from engines.safety.policy import Category, Finding
from engines.text.gguf_header import GGUFHeader, read_gguf_header
from engines.text.requests import ModelOptions

Role = Literal["prompt", "output"]
Family = Literal["llama-guard-3-8b", "llama-guard-3-1b", "shieldgemma"]
FAMILIES: tuple[str, ...] = ("llama-guard-3-8b", "llama-guard-3-1b", "shieldgemma")
_ALIASES = {"llama-guard-3": "llama-guard-3-8b", "llama-guard": "llama-guard-3-8b", "shield-gemma": "shieldgemma"}

# The user turn that stands before an output when the request is not known: plain, so
# the guard judges the output on its own.
NEUTRAL_REQUEST = "Please write a text."


class GuardError(EmberError):
    """The guard model could not judge a text: missing, broken, not a guard, or an unreadable answer."""


# -- Llama Guard 3 ----------------------------------------------------------------------------
LLAMA_GUARD_3_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("S1", "Violent Crimes."),
    ("S2", "Non-Violent Crimes."),
    ("S3", "Sex Crimes."),
    ("S4", "Child Exploitation."),
    ("S5", "Defamation."),
    ("S6", "Specialized Advice."),
    ("S7", "Privacy."),
    ("S8", "Intellectual Property."),
    ("S9", "Indiscriminate Weapons."),
    ("S10", "Hate."),
    ("S11", "Self-Harm."),
    ("S12", "Sexual Content."),
    ("S13", "Elections."),
    ("S14", "Code Interpreter Abuse."),
)
_LG_NAMES = {code: name.rstrip(".") for code, name in LLAMA_GUARD_3_CATEGORIES}

# Llama Guard 3 code -> (Ember category, score), or None where Ember has no such category.
LLAMA_GUARD_3_MAP: dict[str, tuple[Category, float] | None] = {
    "S1": (Category.VIOLENCE, 0.95),
    "S2": (Category.DANGEROUS, 0.95),
    "S3": (Category.SEXUAL, 0.95),
    "S4": (Category.MINORS, 0.95),
    "S5": (Category.HATE, 0.7),
    "S6": (Category.DANGEROUS, 0.3),
    "S7": (Category.DANGEROUS, 0.3),
    "S8": None,
    "S9": (Category.DANGEROUS, 0.95),
    "S10": (Category.HATE, 0.95),
    "S11": (Category.SELF_HARM, 0.95),
    "S12": (Category.SEXUAL, 0.95),
    "S13": None,
    "S14": (Category.DANGEROUS, 0.95),
}
# An "unsafe" without a readable category (only an unconstrained answer can say that).
_UNSPECIFIED = (Category.DANGEROUS, 0.95)

LLAMA_GUARD_GRAMMAR = r"""root ::= "\n"? "\n"? verdict
verdict ::= "safe" | "unsafe" "\n" code ("," code)*
code ::= "S" [1-9] | "S1" [0-4]
"""


def llama_guard_prompt(text: str, role: Role, *, variant: str = "8b", user_text: str | None = None) -> str:
    """Return the Llama Guard 3 prompt judging ``text`` as a user prompt or as the agent's output.

    ``variant`` is "8b" (S1..S14) or "1b" (S1..S13). For an output the conversation
    holds ``user_text`` (or a neutral request) as the user turn before it.
    """
    categories = LLAMA_GUARD_3_CATEGORIES if variant == "8b" else LLAMA_GUARD_3_CATEGORIES[:13]
    if role == "prompt":
        agent = "User"
        conversation = f"User: {neutralize(text).strip()}\n\n"
    else:
        agent = "Agent"
        request = neutralize(user_text if user_text is not None else NEUTRAL_REQUEST).strip()
        conversation = f"User: {request}\n\nAgent: {neutralize(text).strip()}\n\n"
    listed = "".join(f"{code}: {name}\n" for code, name in categories)
    end = " <|eot_id|>" if variant == "1b" else "<|eot_id|>"
    return (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"Task: Check if there is unsafe content in '{agent}' messages in conversations according our "
        "safety policy with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{listed}<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{conversation}<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {agent} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
        f"{end}<|start_header_id|>assistant<|end_header_id|>"
    )


def parse_llama_guard(answer: str) -> list[str]:
    """Return the violated category codes in a Llama Guard answer ([] for "safe").

    Accepts the grammar's answers and real ones ("unsafe\\nS1,S10", "Unsafe S2", a
    leading blank line). An "unsafe" without codes returns ["unspecified"]. Raises
    GuardError for an answer that says neither.
    """
    stripped = answer.strip()
    head = stripped.split(None, 1)[0].lower().rstrip(".:,") if stripped else ""
    if head == "safe":
        return []
    if head == "unsafe":
        codes: list[str] = []
        for number in re.findall(r"\bS(\d{1,2})\b", stripped[len("unsafe") :], flags=re.IGNORECASE):
            code = f"S{int(number)}"
            if code not in codes:
                codes.append(code)
        return codes or ["unspecified"]
    raise GuardError(
        f"The guard model gave an answer Ember cannot read ({stripped[:40]!r}); expected 'safe' or 'unsafe'."
    )


def llama_guard_findings(codes: list[str], checker: str) -> list[Finding]:
    """Return the findings for Llama Guard category codes (see the module docstring for scores)."""
    out: list[Finding] = []
    for code in codes:
        if code == "unspecified":
            category, score = _UNSPECIFIED
            out.append(Finding(category, score, checker, "unsafe (no category)"))
            continue
        mapped = LLAMA_GUARD_3_MAP.get(code)
        if mapped is not None:
            out.append(Finding(mapped[0], mapped[1], checker, f"{code} {_LG_NAMES[code]}"))
    return out


# -- ShieldGemma ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShieldPolicy:
    """One ShieldGemma policy: its name, Ember's category, and the text after "shall not ... content that"."""

    name: str
    category: Category
    content: str

    def guideline(self, role: Role) -> str:
        actor = (
            "The prompt shall not contain or seek generation of content that"
            if role == "prompt"
            else "The chatbot shall not generate content that"
        )
        return f'"{self.name}": {actor} {self.content}'


SHIELDGEMMA_POLICIES: tuple[ShieldPolicy, ...] = (
    ShieldPolicy(
        "No Dangerous Content",
        Category.DANGEROUS,
        "harming oneself and/or others (e.g., accessing or building firearms and explosive devices, "
        "promotion of terrorism, instructions for suicide).",
    ),
    ShieldPolicy(
        "No Harassment",
        Category.HATE,
        "is malicious, intimidating, bullying, or abusive content targeting another individual "
        "(e.g., physical threats, denial of tragic events, disparaging victims of violence).",
    ),
    ShieldPolicy(
        "No Hate Speech",
        Category.HATE,
        "targeting identity and/or protected attributes (e.g., racial slurs, promotion of "
        "discrimination, calls to violence against protected groups) or dehumanizing/belittling/"
        "vilifying on the bases of race, ethnicity, religion, disability, age, nationality, veteran "
        "status, sexual orientation, gender, gender identity, caste, or any other protected status. "
        "We do allow content that includes a reference to a protected individual or group in a "
        "positive manner.",
    ),
    ShieldPolicy(
        "No Sexually Explicit Information",
        Category.SEXUAL,
        "contains references to sexual acts or other lewd content (e.g., sexually graphic "
        "descriptions, content aimed at causing arousal). Medical or scientific terms related to "
        "human anatomy or sex education are permitted.",
    ),
)
SHIELDGEMMA_SCORE = 0.9
SHIELDGEMMA_GRAMMAR = 'root ::= "Yes" | "No"\n'


def shieldgemma_prompt(text: str, role: Role, policy: ShieldPolicy, *, user_text: str | None = None) -> str:
    """Return the ShieldGemma prompt asking whether ``text`` violates ``policy``."""
    closing = (
        "Your answer must start with 'Yes' or 'No'. And then walk through step by step to be sure we "
        "answer correctly.\n\n"
    )
    principle = f"Our safety principle is defined in the below:\n\n* {policy.guideline(role)}\n\n===\n\n"
    if role == "prompt":
        return (
            "<bos>You are a policy expert trying to help determine whether a user prompt is in violation "
            "of the defined safety policies.\n\n"
            f"<start_of_turn>\nHuman Question: {neutralize(text).strip()}\n<end_of_turn>\n\n"
            f"{principle}Does the human question violate the above principle? {closing}"
        )
    request = neutralize(user_text if user_text is not None else NEUTRAL_REQUEST).strip()
    return (
        "<bos>You are a policy expert trying to help determine whether an AI response to a prompt is in "
        "violation of the defined safety policies.\n\n"
        f"<start_of_turn>\nHuman Question: {request}\n<end_of_turn>\n"
        f"<start_of_turn>\nChatbot Response: {neutralize(text).strip()}\n<end_of_turn>\n\n"
        f"{principle}Does the Chatbot Response violate the above principle? {closing}"
    )


def parse_shieldgemma(answer: str) -> bool:
    """Return True when a ShieldGemma answer says the text violates the policy ("Yes").

    Raises GuardError for an answer that starts with neither "Yes" nor "No".
    """
    word = answer.strip().split(None, 1)[0].lower().rstrip(".:,") if answer.strip() else ""
    if word in ("yes", "no"):
        return word == "yes"
    raise GuardError(f"The guard model gave an answer Ember cannot read ({answer.strip()[:40]!r}); expected Yes or No.")


# -- shared -----------------------------------------------------------------------------------
# Special-token markers inside the judged text would become real control tokens (the judge
# tokenizes with special tokens on) and could end the turn and answer "safe" for the guard.
_SPECIAL = re.compile(
    r"<(\|[^<>|\s]{1,48}\|"
    r"|start_of_turn|end_of_turn|bos|eos|pad|unk|mask|start_of_image|end_of_image)>"
)


def neutralize(text: str) -> str:
    """Return ``text`` with special-token markers (``<|eot_id|>``, ``<end_of_turn>`` ...) made inert.

    A zero-width space after the ``<`` keeps them readable but no longer one token.
    """
    return _SPECIAL.sub(lambda m: "<\u200b" + m.group(0)[1:], text)


def detect_family(header: GGUFHeader) -> str | None:
    """Return the guard family a GGUF holds ("llama-guard-3-8b", "llama-guard-3-1b", "shieldgemma"), or None.

    Read from the name, base name and fine-tune in the metadata, then the file name.
    """
    meta = header.metadata
    words = [meta.get("general.name"), meta.get("general.basename"), meta.get("general.finetune"), header.path.stem]
    flat = re.sub(r"[^a-z0-9]", "", " ".join(str(w) for w in words if w).lower())
    if "shieldgemma" in flat:
        return "shieldgemma"
    if "llamaguard3" in flat:
        size = str(meta.get("general.size_label", "")).lower()
        small = size.startswith("1") or "llamaguard31b" in flat or header.block_count == 16
        return "llama-guard-3-1b" if small else "llama-guard-3-8b"
    return None


def _split(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Return two halves of text[start:end] that overlap by an eighth (at most 400 characters)."""
    size = end - start
    overlap = min(400, size // 8)
    mid = start + size // 2
    left_end = _at_space(text, mid + overlap, end)
    right_start = _at_space(text, mid - overlap, mid)
    return [(start, left_end), (right_start, end)]


def _at_space(text: str, pos: int, limit: int) -> int:
    # Cut at whitespace near pos when there is one within 40 characters, so no word is split.
    for i in range(pos, min(limit, pos + 40)):
        if text[i].isspace():
            return i
    return pos


_MIN_WINDOW_CHARS = 64


class GuardChecker:
    """A guard model judging prompts and outputs; ``check`` returns findings named ``guard:<model>``."""

    def __init__(self, registry: ModelRegistry, options: ModelOptions, family: str | None = None) -> None:
        """Read the model's header and settle its family; raises GuardError when it is not usable."""
        self.registry = registry
        self.options = options
        try:
            self.header = read_gguf_header(resolve_model_path(options.path))
        except EmberError as exc:
            raise GuardError(f"The guard model cannot be used: {exc}") from None
        if family is not None:
            family = _ALIASES.get(family, family)
            if family not in FAMILIES:
                raise GuardError(f"Ember does not know the guard family '{family}'; it knows {', '.join(FAMILIES)}.")
        else:
            family = detect_family(self.header)
            if family is None:
                raise GuardError(
                    f"'{self.header.name}' is not a guard model Ember recognises (Llama Guard 3 or ShieldGemma). "
                    "Pick a guard GGUF, or choose its family in Settings if it is one under another name."
                )
        self.family: str = family
        self.name = f"guard:{self.header.name}"

    def check(self, text: str, role: Role, *, user_text: str | None = None) -> list[Finding]:
        """Return the guard's findings on ``text`` as a user "prompt" or a model "output".

        ``user_text`` is the request an output answered, when known. Raises GuardError
        when the model is missing or broken or answers unreadably; Cancelled passes through.
        """
        if role not in ("prompt", "output"):
            raise ValueError(f"role must be 'prompt' or 'output', not {role!r}")
        if not text.strip():
            return []
        try:
            with self.registry.use(self.options) as engine:
                return self._windows(engine, text, role, user_text)
        except (GuardError, Cancelled):
            raise
        except EmberError as exc:
            raise GuardError(f"The guard model '{self.header.name}' could not check the text: {exc}") from None
        except Exception as exc:  # a crash inside llama.cpp's bindings: say which component failed
            raise GuardError(describe_unexpected(exc, f"guard model '{self.header.name}'")) from None

    def _windows(self, engine: Any, text: str, role: Role, user_text: str | None) -> list[Finding]:
        pending = [(0, len(text))]
        best: dict[tuple[Category, str], Finding] = {}
        while pending:
            start, end = pending.pop(0)
            try:
                found = self._judge(engine, text[start:end], role, user_text)
            except ContextOverflowError:
                if end - start <= _MIN_WINDOW_CHARS:
                    raise GuardError(
                        f"The guard model's {engine.context_tokens}-token context is too small "
                        "for its own instructions. Raise its context length in Settings."
                    ) from None
                pending[:0] = _split(text, start, end)
                continue
            for finding in found:
                key = (finding.category, finding.rule)
                if key not in best or finding.score > best[key].score:
                    best[key] = replace(finding, start=start, end=end)
        return list(best.values())

    def _judge(self, engine: Any, text: str, role: Role, user_text: str | None) -> list[Finding]:
        judge = engine.judge
        if self.family == "shieldgemma":
            out = []
            for policy in SHIELDGEMMA_POLICIES:
                answer = judge(
                    shieldgemma_prompt(text, role, policy, user_text=user_text),
                    grammar=SHIELDGEMMA_GRAMMAR,
                    max_tokens=2,
                )
                if parse_shieldgemma(answer):
                    out.append(Finding(policy.category, SHIELDGEMMA_SCORE, self.name, policy.name))
            return out
        variant = "1b" if self.family == "llama-guard-3-1b" else "8b"
        answer = judge(
            llama_guard_prompt(text, role, variant=variant, user_text=user_text),
            grammar=LLAMA_GUARD_GRAMMAR,
            max_tokens=24,
        )
        return llama_guard_findings(parse_llama_guard(answer), self.name)
