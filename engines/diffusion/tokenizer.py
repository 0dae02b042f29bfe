"""CLIP's byte-level BPE tokenizer, built from a model folder's own files without transformers.

Stable Diffusion's text encoders read 77 token ids: a start token, the prompt's BPE tokens,
an end token, then padding. diffusers tokenizes with transformers' ``CLIPTokenizer``; this
module gives the same ids with the ``tokenizers`` library (the BPE merging) and a few lines of
Python (the text clean-up), from ``tokenizer/vocab.json`` + ``merges.txt`` or a
``tokenizer.json``.

The clean-up is the one ``CLIPTokenizer`` applies when the ``ftfy`` package is not installed
(diffusers does not install it, and neither does Ember): control characters dropped,
whitespace collapsed, spaces around CJK ideographs, NFC, lower case. transformers' fast
tokenizer differs from that in small ways (it keeps control characters, for one), so it is
not the reference here: diffusers' pipelines use the slow one.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from engines.errors import ModelFileError

# CLIP's pre-tokenizer: contractions, runs of letters, single digits, runs of other symbols.
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

# CLIPTokenizer reads at most this many merges (the original CLIP vocabulary's size less the
# 256 byte symbols and 2 special tokens), skipping the "#version" first line.
_MAX_MERGES = 49152 - 256 - 2

_DEFAULT_MAX_LENGTH = 77


@dataclass(frozen=True)
class PromptTokens:
    """One prompt as the text encoder reads it.

    ``ids`` has exactly ``max_length`` entries (start, tokens, end, padding).
    ``truncated_tokens`` counts the prompt tokens that did not fit and were dropped, and
    ``dropped_text`` is roughly what they spelled, for telling the person.
    """

    ids: tuple[int, ...]
    truncated_tokens: int = 0
    dropped_text: str = ""

    @property
    def truncated(self) -> bool:
        return self.truncated_tokens > 0


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))  # noqa: B905 (same length by construction)


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def normalize_prompt(text: str) -> str:
    """Return ``text`` cleaned up the way CLIPTokenizer does without ftfy.

    Control characters (and U+FFFD) are dropped, whitespace becomes single spaces, CJK
    ideographs stand as words of their own, the text is NFC-normalised and lower-cased.
    """
    out = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue
        if _is_whitespace(char):
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {char} ")
        else:
            out.append(char)
    text = unicodedata.normalize("NFC", "".join(out))
    return " ".join(word.lower() for word in text.split())


def _token_text(value: Any, default: str) -> str:
    """A special token as tokenizer configs write it: a string, or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else default


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"Ember cannot read '{path}' ({exc}). The model folder may be damaged.") from None
    return data if isinstance(data, dict) else {}


class ClipTokenizer:
    """CLIP BPE tokenization equal to transformers' CLIPTokenizer (as diffusers uses it).

    Build it with :meth:`from_folder`; :meth:`encode` turns a prompt into padded ids.
    """

    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        *,
        bos_token: str = "<|startoftext|>",
        eos_token: str = "<|endoftext|>",
        pad_token: str = "<|endoftext|>",
        unk_token: str = "<|endoftext|>",
        max_length: int = _DEFAULT_MAX_LENGTH,
    ) -> None:
        from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

        for name, token in (("start", bos_token), ("end", eos_token), ("unknown", unk_token)):
            if token not in vocab:
                raise ModelFileError(
                    f"The tokenizer's vocabulary has no {name} token '{token}'. The tokenizer files are damaged "
                    "or belong to another kind of model; re-download or re-convert the model."
                )
        self.vocab = vocab
        self.max_length = max_length
        self.bos_id = vocab[bos_token]
        self.eos_id = vocab[eos_token]
        # CLIPTokenizer gives a pad token missing from the vocabulary the unknown token's id.
        self.pad_id = vocab.get(pad_token, vocab[unk_token])
        self._id_to_token = {i: t for t, i in vocab.items()}
        self.special_tokens = {bos_token, eos_token}
        self._byte_of = {c: b for b, c in bytes_to_unicode().items()}
        try:
            bpe = models.BPE(
                vocab=vocab,
                merges=merges,
                unk_token=unk_token,
                continuing_subword_prefix="",
                end_of_word_suffix="</w>",
                fuse_unk=False,
            )
        except Exception as exc:  # the Rust side raises plain Exceptions for bad merges
            raise ModelFileError(
                f"The tokenizer's merges do not fit its vocabulary ({exc}). Re-download or re-convert the model."
            ) from None
        tokenizer = Tokenizer(bpe)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
                # Only the byte-to-character mapping: the split above already made the words.
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        # A prompt that spells a special token gets that token, as with CLIPTokenizer; that
        # includes the pad token, so "!" in a prompt is a token of its own for SDXL's second
        # tokenizer, whose pad token it is.
        specials = [t for t in dict.fromkeys((bos_token, eos_token, unk_token, pad_token)) if t in vocab]
        tokenizer.add_special_tokens([AddedToken(t, normalized=False) for t in specials])
        self._tokenizer = tokenizer

    @classmethod
    def from_folder(cls, folder: Path | str) -> ClipTokenizer:
        """Return the tokenizer in ``folder`` (a model's ``tokenizer/`` or ``tokenizer_2/``).

        Reads ``vocab.json`` + ``merges.txt``, or ``tokenizer.json`` when those are missing,
        and the special tokens and length from ``tokenizer_config.json`` and
        ``special_tokens_map.json``. Raises ModelFileError when the files are missing or damaged.
        """
        folder = Path(folder)
        vocab_path, merges_path, joined_path = folder / "vocab.json", folder / "merges.txt", folder / "tokenizer.json"
        if vocab_path.is_file() and merges_path.is_file():
            vocab = _read_json(vocab_path)
            try:
                lines = merges_path.read_text(encoding="utf-8").strip().split("\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise ModelFileError(f"Ember cannot read '{merges_path}' ({exc}).") from None
            merges = [tuple(line.split()) for line in lines[1 : _MAX_MERGES + 1]]
        elif joined_path.is_file():
            model = _read_json(joined_path).get("model") or {}
            vocab = model.get("vocab") or {}
            merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model.get("merges") or []]
            merges = merges[:_MAX_MERGES]
        else:
            raise ModelFileError(
                f"The model folder has no tokenizer files in '{folder}' (vocab.json and merges.txt, or "
                "tokenizer.json). Re-download or re-convert the model."
            )
        if not vocab:
            raise ModelFileError(f"The tokenizer in '{folder}' has an empty vocabulary. Re-download the model.")
        pairs = [m for m in merges if len(m) == 2]
        config = _read_json(folder / "tokenizer_config.json")
        special = _read_json(folder / "special_tokens_map.json")

        def token(key: str, default: str) -> str:
            return _token_text(config.get(key), _token_text(special.get(key), default))

        length = config.get("model_max_length")
        # transformers writes a huge sentinel when a tokenizer has no limit; CLIP's is 77.
        max_length = int(length) if isinstance(length, (int, float)) and 2 < length < 100_000 else _DEFAULT_MAX_LENGTH
        return cls(
            vocab,
            pairs,
            bos_token=token("bos_token", "<|startoftext|>"),
            eos_token=token("eos_token", "<|endoftext|>"),
            pad_token=token("pad_token", "<|endoftext|>"),
            unk_token=token("unk_token", "<|endoftext|>"),
            max_length=max_length,
        )

    def tokenize(self, text: str) -> list[int]:
        """Return the ids of ``text``'s tokens, without start/end tokens, padding or truncation."""
        if not text:
            return []
        return self._tokenizer.encode(normalize_prompt(text), add_special_tokens=False).ids

    def encode(self, text: str) -> PromptTokens:
        """Return ``text`` as ``max_length`` ids: start, tokens, end, padding.

        A prompt longer than ``max_length - 2`` tokens keeps its first tokens and still ends
        with the end token; ``truncated_tokens`` says how many were dropped.
        """
        tokens = self.tokenize(text)
        room = self.max_length - 2
        kept, dropped = tokens[:room], tokens[room:]
        ids = [self.bos_id, *kept, self.eos_id]
        ids += [self.pad_id] * (self.max_length - len(ids))
        return PromptTokens(tuple(ids), len(dropped), self.decode(dropped) if dropped else "")

    def decode(self, ids: list[int]) -> str:
        """Return the text that ``ids`` spell (lower-cased, as the tokenizer saw it)."""
        raw = bytearray()
        for i in ids:
            token = self._id_to_token.get(i, "")
            if token in self.special_tokens:
                continue
            word_end = token.endswith("</w>")
            raw += bytes(self._byte_of[c] for c in token.removesuffix("</w>") if c in self._byte_of)
            if word_end:
                raw += b" "
        return raw.decode("utf-8", errors="replace").strip()


def load_clip_tokenizer(folder: Path | str) -> ClipTokenizer:
    """Return the CLIP tokenizer in ``folder`` (see :meth:`ClipTokenizer.from_folder`); raises ModelFileError."""
    return ClipTokenizer.from_folder(folder)
