"""Which part of llama.cpp's context can be reused bit for bit, and in which batches a prompt is evaluated.

Same seed, same reply, whether a request is the first after loading or the tenth: every
logit must be computed the same way both times. On many CPUs it is not when the batch
differs: a token evaluated alone takes other matrix kernels than the same token inside a
batch of many, and the logits move (by up to 0.6 on this project's AMD EPYC with AVX-512),
enough to change a sampled reply. llama-cpp-python's own prefix reuse evaluates at least the
last prompt token alone, and every token of a reply was evaluated alone while it was made.

So a sequence of tokens has one canonical evaluation, a function of the tokens alone:
it is cut into segments after each end-of-turn token (so each message of a chat is one
segment), and each segment into blocks of ``block`` tokens from the segment's start; each
block is one batch. A position of the cache may be reused only if it was computed in a
canonical block that the new prompt's own evaluation would also have: the same tokens in the
same blocks on the same state compute the same bits, on any kernels. A reply, made token by
token, is evaluated again in its canonical blocks in idle time after it was delivered, so the
next turn of the conversation reuses everything up to the person's new message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Block = tuple[int, int]


class PromptCache:
    """The bookkeeping of one llama.cpp context: what is canonical in it, and what to make canonical when idle."""

    def __init__(self, block: int, is_end_of_turn: Callable[[int], bool]) -> None:
        if block < 1:
            raise ValueError("block must be at least 1")
        self.block = block
        self._is_end = is_end_of_turn
        self.canonical: list[int] = []  # tokens whose cache entries were computed in canonical blocks
        self._pending: list[int] = []  # a prompt and its reply, to be made canonical in idle time
        self._idle: list[Block] = []

    def is_end_of_turn(self, token: int) -> bool:
        return self._is_end(token)

    # -- the canonical evaluation ----------------------------------------------------------------
    def blocks(self, tokens: Sequence[int]) -> list[Block]:
        """The canonical batches of ``tokens``: segments end after each end-of-turn token, blocks from each start."""
        out: list[Block] = []
        start = 0
        n = len(tokens)
        for i in range(n):
            if self._is_end(tokens[i]) or i == n - 1:
                end = i + 1
                out += [(s, min(s + self.block, end)) for s in range(start, end, self.block)]
                start = end
        return out

    def canonical_end(self, tokens: Sequence[int]) -> int:
        """How much of ``tokens``, once evaluated canonically, every longer sequence evaluates the same way.

        All of it when it ends a turn; otherwise up to the last whole block of its open segment
        (the partial last block of a longer sequence would be bigger).
        """
        if not tokens:
            return 0
        if self._is_end(tokens[-1]):
            return len(tokens)
        start = max((i + 1 for i in range(len(tokens)) if self._is_end(tokens[i])), default=0)
        return start + (len(tokens) - start) // self.block * self.block

    def plan(self, tokens: Sequence[int], *, evaluate_last: bool = True) -> tuple[int, list[Block]]:
        """Return (how many cached tokens to keep, the blocks to evaluate) for ``tokens``.

        With ``evaluate_last`` (a prompt) the block holding the last token is always evaluated:
        its logits are the ones sampled from.
        """
        common = 0
        for cached, token in zip(self.canonical, tokens, strict=False):
            if cached != token:
                break
            common += 1
        blocks = self.blocks(tokens)
        keep = 0
        for _start, end in blocks[:-1] if evaluate_last else blocks:
            if end > common:
                break
            keep = end
        return keep, [b for b in blocks if b[0] >= keep]

    # -- what the context holds ------------------------------------------------------------------
    def forget(self) -> None:
        """Nothing in the context can be trusted (it is being changed, or was reset)."""
        self.canonical = []
        self._pending = []
        self._idle = []

    def evaluated(self, tokens: Sequence[int]) -> None:
        """``tokens`` were just evaluated canonically (after :meth:`plan`); nothing is pending."""
        self.canonical = list(tokens[: self.canonical_end(tokens)])
        self._pending = []
        self._idle = []

    def generated(self, sequence: Sequence[int]) -> None:
        """A reply was made: ``sequence`` (its prompt, the reply's tokens, its end-of-turn token if one was
        sampled) is what the next turn will start with; it is made canonical in idle time."""
        end = self.canonical_end(sequence)
        _keep, blocks = self.plan(sequence, evaluate_last=False)
        self._pending = list(sequence)
        self._idle = [b for b in blocks if b[1] <= end]

    def next_idle_block(self) -> tuple[Block, list[int]] | None:
        """The next block to evaluate in idle time and the tokens it belongs to, or None when nothing is left."""
        if not self._idle:
            return None
        return self._idle[0], self._pending

    def idle_block_done(self) -> None:
        """The block from :meth:`next_idle_block` was evaluated: the canonical part grows by it."""
        (_start, end), self._idle = self._idle[0], self._idle[1:]
        self.canonical = self._pending[:end]
        if not self._idle:
            self._pending = []
