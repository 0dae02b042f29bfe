"""The text engine: GGUF models through llama-cpp-python.

Chat uses the model's own chat template from its GGUF metadata; base models
without one do plain completion. Tokens stream one by one through the pipeline,
and the cancel token is checked after every token.

Same seed, same reply: prompts are evaluated in canonical blocks and the cache is reused only
where that is bit for bit what a fresh load computes (engines/text/prompt_cache.py); a reply is
evaluated again in its canonical blocks in idle time (:meth:`LlamaEngine.idle`), so the next
turn reuses it. llama-cpp-python's own prefix reuse changes the logits a little (a token
evaluated alone takes other kernels than one inside a batch), and a sampled reply drifts.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from engines.engine import Progress
from engines.errors import (
    Cancelled,
    ContextOverflowError,
    EmberError,
    InvalidRequestError,
    ModelFileError,
    OutOfMemoryError,
    names_gpu,
    says_out_of_memory,
)
from engines.hardware import default_threads, llama_gpu_backend
from engines.jobs import CancelToken
from engines.models.embedded import resolve_model_path
from engines.models.hashes import file_sha256
from engines.pipeline import Provenance
from engines.text.chat_template import ChatTemplate
from engines.text.gguf_header import GGUFHeader, read_gguf_header
from engines.text.prompt_cache import PromptCache
from engines.text.requests import ChatRequest, CompletionRequest, Message, ModelOptions, TextOutput, TokenLogprob
from engines.units import human_bytes

# llama.cpp's compute buffers and the process's own overhead, beyond weights and KV cache.
_COMPUTE_OVERHEAD_BYTES = 160 * 2**20
# Prompt blocks (see the module docstring). On the CPU 128 tokens a batch cost 0-10% of prompt speed
# beside 512 (bench prompt-cache) and leave at most 127 tokens of a cached prompt to evaluate again;
# a GPU wants big batches.
CPU_BLOCK_TOKENS = 128
GPU_BLOCK_TOKENS = 512


_ALLOCATING = re.compile(r"allocating ([\d.]+) MiB|buffer of size (\d+)")


def _needed(log: str) -> str:
    """ " (it needed 2.1 GB more)" when llama.cpp's logged error says how much it asked for, else ""."""
    found = _ALLOCATING.search(log)
    if found is None:
        return ""
    size = float(found.group(1)) * 2**20 if found.group(1) else int(found.group(2))
    return f" (it needed {human_bytes(size, approximate=True)} more)"


class LlamaEngine:
    """One GGUF model loaded with llama.cpp."""

    kind = "text"

    def __init__(self, options: ModelOptions, watermark_key: bytes | None = None) -> None:
        self.options = options
        # With a key, sampled replies carry the statistical text watermark (greedy ones cannot).
        self.watermark_key = watermark_key
        # Makes the watermark's chooser for (key, seed); None: the Gumbel-max scheme. Benchmarks swap it.
        self.watermark_chooser: Callable[[bytes, int], Any] | None = None
        self.path = resolve_model_path(options.path)
        self.header: GGUFHeader = read_gguf_header(self.path)
        trained = self.header.context_length
        # A header that says 0 (or less) tells nothing: the context asked for is used as it is.
        self.context_tokens = min(options.context_tokens, trained) if trained > 0 else options.context_tokens
        self.threads = options.threads or default_threads()
        self.backend = "CPU"
        self.notes: list[str] = []
        self._llm: Any = None
        self._template: ChatTemplate | None = None
        self._sha256 = ""
        self._pieces: dict[int, bytes] = {}
        self.block_tokens = CPU_BLOCK_TOKENS
        self._cache: PromptCache | None = None  # made at load: it needs the vocabulary's end-of-turn tokens

    # -- the Engine protocol -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.header.name

    @property
    def has_chat_template(self) -> bool:
        return self.header.chat_template is not None

    def memory_estimate(self) -> int:
        """Return weights + KV cache at the chosen context + compute buffers, in bytes."""
        return self.header.file_bytes + self.header.kv_cache_bytes(self.context_tokens) + _COMPUTE_OVERHEAD_BYTES

    def details(self) -> dict[str, Any]:
        """What the Studio may read of this engine when it runs in an engine process."""
        from engines.text.cpu_backend import loaded_cpu_backend

        cpu = loaded_cpu_backend()
        return {
            "context_tokens": self.context_tokens,
            "threads": self.threads,
            "has_chat_template": self.has_chat_template,
            "block_tokens": self.block_tokens,
            "cpu_variant": cpu.variant if cpu else "",
            "sha256": self._sha256,
        }

    def load(self) -> None:
        """Load the model with llama.cpp, offloading to the GPU when asked and possible.

        Raises ModelFileError when llama.cpp cannot load the file.
        """
        if self._llm is not None:
            return
        from engines.text.cpu_backend import ready_llama_cpp

        llama_cpp = ready_llama_cpp()  # heavy: here, in the engine process, never at start-up

        if self.context_tokens < self.options.context_tokens:
            self.notes.append(
                f"{self.name} was trained for {self.header.context_length} tokens of context; "
                f"using {self.context_tokens} instead of {self.options.context_tokens}."
            )
        gpu = llama_gpu_backend() if self.options.device in ("auto", "gpu") else None
        if self.options.device == "gpu" and gpu is None:
            self.notes.append("No GPU backend is available in this build of llama.cpp; running on the CPU.")
        from engines.text.llama_log import last_error

        last_error()  # forget what was logged before: what is logged now says why this load failed
        try:
            self._llm = self._open(llama_cpp, gpu_layers=-1 if gpu else 0)
            self.backend = gpu or "CPU"
        except ValueError as exc:
            if not gpu:
                raise self._load_error(exc, last_error()) from None
            why = last_error()
            try:
                self._llm = self._open(llama_cpp, gpu_layers=0)
            except ValueError as exc2:
                raise self._load_error(exc2, last_error() or why) from None
            self.backend = "CPU"
            reason = " (there is not enough GPU memory free)" if says_out_of_memory(why) else ""
            self.notes.append(f"{self.name} could not be loaded on the {gpu} GPU{reason}; it runs on the CPU instead.")
        self.block_tokens = CPU_BLOCK_TOKENS if self.backend == "CPU" else GPU_BLOCK_TOKENS
        vocab = self._llm._model.vocab
        self._cache = PromptCache(self.block_tokens, lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token)))
        template = self.header.chat_template
        if template:
            tokens = self.header.special_tokens
            self._template = ChatTemplate(template, tokens.get("bos", ""), tokens.get("eos", ""))
        try:
            self._sha256 = file_sha256(self.path)
        except OSError as exc:
            raise ModelFileError(f"Ember cannot read '{self.path}' ({exc}).") from None

    def _open(self, llama_cpp: Any, gpu_layers: int) -> Any:
        return llama_cpp.Llama(
            self.path,
            n_ctx=self.context_tokens,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            n_gpu_layers=gpu_layers,
            verbose=False,
        )

    def _load_error(self, exc: Exception, why: str) -> EmberError:
        """What a person reads when llama-cpp-python could not load the model (``why``: llama.cpp's logged reason).

        OutOfMemoryError when the weights or the context (its KV cache) did not fit; ModelFileError
        for a file llama.cpp cannot read; EmberError for a context it cannot make for another reason.
        """
        # llama-cpp-python says only "Failed to load model from file" or "Failed to create llama_context";
        # llama.cpp's own log says why.
        context = "llama_context" in str(exc)
        if says_out_of_memory(why):
            where = "GPU memory" if names_gpu(why) else "memory"
            size = _needed(why)
            advice = (
                "Close other programs (on the GPU: other models and games too), pick a smaller model or "
                "quantisation, or set the device to CPU in Settings."
            )
            if context:
                return OutOfMemoryError(
                    f"There is not enough {where} free for {self.name} with a {self.context_tokens:,}-token "
                    f"context{size}. Lower the context length in Settings. {advice}"
                )
            return OutOfMemoryError(f"There is not enough {where} free to load {self.name}{size}. {advice}")
        if context:
            return EmberError(
                f"llama.cpp could not make a {self.context_tokens:,}-token context for {self.name}"
                f"{f' ({why})' if why else ''}. Lower the context length in Settings and try again."
            )
        return ModelFileError(
            f"llama.cpp could not load '{self.header.path.name}' (architecture '{self.header.architecture}', "
            f"{self.header.quantization}): {why or exc}. The file may be damaged, or this version of llama.cpp "
            "may not support that architecture yet; try another file or update Ember."
        )

    def _decode_error(self, exc: RuntimeError) -> BaseException:
        """What a person reads when llama.cpp fails to evaluate tokens (llama-cpp-python's "llama_decode returned N").

        The context's cache is forgotten (what a failed decode left in it is not trusted). Returns
        OutOfMemoryError when a buffer could not be allocated (-2, or the log says so),
        ContextOverflowError when the context had no room (1), EmberError otherwise, and ``exc``
        itself for a RuntimeError that is not llama.cpp's.
        """
        from engines.text.llama_log import last_error

        found = re.search(r"llama_(?:decode|encode) returned (-?\d+)", str(exc))
        if found is None:
            return exc
        why = last_error()
        self.reset_cache()
        code = int(found.group(1))
        if code == -2 or says_out_of_memory(why):
            where = "GPU memory" if self.backend != "CPU" or names_gpu(why) else "memory"
            return OutOfMemoryError(
                f"{self.name} ran out of {where} while writing{_needed(why)}. Lower the context length in "
                "Settings, close other programs (on the GPU: other models and games too), or set the device "
                "to CPU; then try again. What was saved before is kept."
            )
        if code == 1:
            return ContextOverflowError(
                f"The {self.context_tokens:,}-token context of {self.name} has no room left. Start a new "
                "conversation or raise the context length in Settings."
            )
        return EmberError(
            f"llama.cpp failed while {self.name} was writing (its decode step ended with code {code}"
            f"{f': {why}' if why else ''}). Try again; if it happens again, reload the model or update Ember."
        )

    def unload(self) -> None:
        self._pieces.clear()
        self._cache = None
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    def provenance(self, request: ChatRequest | CompletionRequest, output: TextOutput) -> Provenance:
        from engines.reproducibility import made_on
        from engines.text.cpu_backend import loaded_cpu_backend
        from engines.text.record_settings import kernels_of, settings_of

        cpu = loaded_cpu_backend()
        made = made_on(self.backend, kernels_of(cpu.variant if cpu else ""))
        return Provenance(
            model_name=self.name,
            model_path=str(self.path),
            model_sha256=self._sha256,
            backend=self.backend,
            settings=settings_of(request, output.seed, self.context_tokens, self.threads, made),
            seed=output.seed,
        )

    def run(self, request: ChatRequest | CompletionRequest, progress: Progress, cancel: CancelToken) -> TextOutput:
        """Generate a reply or a continuation, streaming tokens to ``progress``.

        Raises ContextOverflowError when the input cannot fit, EmberError for a chat
        with a model that has no chat template, and Cancelled (holding the partial
        output) when the job is cancelled.
        """
        self.load()
        for note in self.notes:
            progress.notice(note)
        self.notes.clear()
        tokens, dropped = self._prompt(request)
        if dropped:
            what = "messages" if isinstance(request, ChatRequest) else "tokens"
            progress.notice(
                f"The conversation is longer than the {self.context_tokens}-token context, so the model "
                f"does not see the {dropped} oldest {what}."
            )
        try:
            return self._generate(tokens, request, request.stop, dropped, progress, cancel)
        except RuntimeError as exc:
            raise self._decode_error(exc) from None

    def prompt_tokens(self, request: ChatRequest | CompletionRequest) -> list[int]:
        """Return the tokens the model would read for ``request`` (after any trimming to fit)."""
        self.load()
        return self._prompt(request)[0]

    def judge(self, prompt: str, *, grammar: str | None = None, max_tokens: int = 24) -> str:
        """Return the model's greedy continuation of ``prompt``, for guard models judging a text.

        ``prompt`` is used verbatim (special tokens allowed); ``grammar`` (GBNF) constrains
        the answer so that any model's reply can be parsed. Not streamed, not watermarked:
        the answer is read by Ember, never shown as an output. Raises ContextOverflowError
        when the prompt does not fit.
        """
        self.load()
        import llama_cpp

        tokens = self._tokenize(prompt)
        if len(tokens) + max_tokens > self.context_tokens:
            raise ContextOverflowError(
                f"The text to check needs {len(tokens)} tokens, more than the guard model's "
                f"{self.context_tokens}-token context. Raise its context length in Settings."
            )
        constraint = llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) if grammar else None
        sampler = self._llm._init_sampler(temp=0.0, repeat_penalty=1.0, grammar=constraint)
        vocab = self._llm._model.vocab
        answer = bytearray()
        try:
            self._prefill(tokens)
            for i in range(max_tokens):
                token = sampler.sample(self._llm._ctx, -1)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    break
                answer += self._piece(token)
                if i + 1 < max_tokens:
                    self._llm.eval([token])
        except RuntimeError as exc:
            raise self._decode_error(exc) from None
        finally:
            sampler.close()
        return answer.decode("utf-8", "replace")

    def reset_cache(self) -> None:
        """Forget the prompt cache, so the next request evaluates its whole prompt (for benchmarks)."""
        if self._cache is not None:
            self._cache.forget()
        if self._llm is not None:
            self._llm.reset()

    def idle(self) -> bool:
        """Do one piece of idle work (evaluate one block of the last reply canonically); return whether more is left.

        The engine process calls it while no request waits, so the next turn can reuse the reply.
        """
        step = self._cache.next_idle_block() if self._cache is not None else None
        if step is None:
            return False
        (start, end), sequence = step
        self._llm.n_tokens = start
        try:
            self._llm.eval(sequence[start:end])
        except RuntimeError as exc:
            raise self._decode_error(exc) from None
        self._cache.idle_block_done()
        return self._cache.next_idle_block() is not None

    def _prefill(self, tokens: list[int]) -> int:
        """Evaluate prompt ``tokens`` canonically, reusing what the cache holds bit for bit; return how many it reused.

        After it the model's last logits are those of the prompt's last token, computed exactly
        as a fresh load computes them.
        """
        assert self._cache is not None
        keep, blocks = self._cache.plan(tokens)
        self._cache.forget()  # nothing is trusted while the context changes
        self._llm.n_tokens = keep
        for start, end in blocks:
            self._llm.eval(tokens[start:end])
        self._cache.evaluated(tokens)
        return keep

    # -- prompt building ------------------------------------------------------------------
    def _prompt(self, request: ChatRequest | CompletionRequest) -> tuple[list[int], int]:
        """Return the prompt tokens and how many messages (or tokens) were dropped to fit.

        Raises ContextOverflowError when 'max tokens' leaves no room or the input cannot fit.
        """
        budget = self.context_tokens - request.sampling.max_tokens
        if budget < 8:
            raise ContextOverflowError(
                f"'Max tokens' ({request.sampling.max_tokens}) leaves no room for your text in the "
                f"{self.context_tokens}-token context. Lower 'max tokens' or raise the context length."
            )
        if isinstance(request, ChatRequest):
            return self._chat_tokens(request, budget)
        return self._completion_tokens(request, budget)

    def _tokenize(self, text: str) -> list[int]:
        bos_text = self.header.special_tokens.get("bos", "")
        add_bos = bool(self.header.metadata.get("tokenizer.ggml.add_bos_token", True))
        if bos_text and text.startswith(bos_text):
            add_bos = False
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def _chat_tokens(self, request: ChatRequest, budget: int) -> tuple[list[int], int]:
        if self._template is None:
            raise EmberError(
                f"'{self.name}' is a base model without a chat template, so it cannot chat. "
                "Switch the Chat panel to 'Complete' to continue a text with it, or pick an instruct model."
            )
        system = [Message("system", request.system_prompt)] if request.system_prompt.strip() else []
        convo = list(request.messages)
        if not convo:
            raise EmberError("There is nothing to reply to: the conversation is empty.")
        keep = 2 if request.mode == "continue" and len(convo) >= 2 else 1
        dropped = 0
        tools = self._tools(request)
        while True:
            if request.mode == "continue":
                prompt = self._template.render_continuation(system + convo)
            else:
                prompt = self._template.render(system + convo, add_generation_prompt=True, tools=tools)
            tokens = self._tokenize(prompt)
            if len(tokens) <= budget:
                return tokens, dropped
            if request.overflow == "error" or len(convo) <= keep:
                raise ContextOverflowError(
                    f"Your message needs {len(tokens)} tokens, but the model's {self.context_tokens}-token "
                    f"context has room for {budget} once {request.sampling.max_tokens} are kept for the reply. "
                    "Shorten the message, lower 'max tokens', or raise the context length in Settings."
                )
            # Drop the oldest turn: the first message, and any assistant replies that then lead.
            convo.pop(0)
            dropped += 1
            while len(convo) > keep and convo[0].role == "assistant":
                convo.pop(0)
                dropped += 1

    def _tools(self, request: ChatRequest) -> list[dict[str, Any]] | None:
        """The request's functions for the template; raises InvalidRequestError when its template cannot offer any."""
        if not request.tools:
            return None
        assert self._template is not None
        if not self._template.uses_tools:
            raise InvalidRequestError(
                f"The chat template of {self.name} does not describe functions to the model, so it cannot call "
                "tools. Use a model whose template supports tools (Qwen 2.5 and 3, Llama 3.1 and later, Mistral, "
                "Hermes, SmolLM3, ...), or send the request without 'tools'.",
                "tools",
            )
        try:
            tools = json.loads(request.tools)
        except ValueError:
            raise InvalidRequestError("The request's tools are not valid JSON.", "tools") from None
        return tools if isinstance(tools, list) else None

    def _completion_tokens(self, request: CompletionRequest, budget: int) -> tuple[list[int], int]:
        tokens = self._tokenize(request.prompt)
        if not tokens:
            raise EmberError("There is no text to continue.")
        if len(tokens) <= budget:
            return tokens, 0
        if request.overflow == "error":
            raise ContextOverflowError(
                f"The text is {len(tokens)} tokens, but the model's {self.context_tokens}-token context has "
                f"room for {budget} once {request.sampling.max_tokens} are kept for the continuation. "
                "Shorten it, lower 'max tokens', or raise the context length."
            )
        head = 1 if tokens[0] == self._llm.token_bos() else 0
        dropped = len(tokens) - budget
        return tokens[:head] + tokens[head + dropped :], dropped

    def _next_turn(
        self, request: ChatRequest | CompletionRequest, prompt: list[int], made: list[int], dropped: int, text: str
    ) -> list[int]:
        """The tokens the next turn's prompt will start with: this conversation with the reply and its end of turn.

        Rendered with the model's template (so the reply's end-of-turn token is there even when the
        reply stopped at 'max tokens'); the prompt and the reply as made where the template is not
        stable under one more message.
        """
        sequence = prompt + made
        if not isinstance(request, ChatRequest) or self._template is None:
            return sequence
        system = [Message("system", request.system_prompt)] if request.system_prompt.strip() else []
        convo = list(request.messages)[dropped:]
        if request.mode == "continue" and convo:
            convo[-1] = Message("assistant", convo[-1].content + text)
        else:
            convo.append(Message("assistant", text))
        try:
            tools = self._tools(request)
            rendered = self._tokenize(self._template.render(system + convo, add_generation_prompt=False, tools=tools))
        except EmberError:
            return sequence
        if rendered[: len(prompt)] != prompt:
            return sequence
        assert self._cache is not None
        for i in range(len(prompt), len(rendered)):
            if self._cache.is_end_of_turn(rendered[i]):
                return rendered[: i + 1]
        return sequence

    # -- generation -----------------------------------------------------------------------
    def _piece(self, token: int) -> bytes:
        """Return the bytes of one token (cached: the vocabulary never changes)."""
        cached = self._pieces.get(token)
        if cached is None:
            import ctypes

            import llama_cpp

            size = 64
            while True:
                buf = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self._llm._model.vocab, token, buf, size, 0, False)
                if n >= 0:
                    cached = buf.raw[:n]
                    break
                size = -n
            self._pieces[token] = cached
        return cached

    def _logprob(self, token: int, top: int) -> TokenLogprob:
        """``token``'s log-probability under the model at this step, and the ``top`` likeliest tokens'."""
        import llama_cpp
        import numpy as np

        n_vocab = self._llm.n_vocab()
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1), shape=(n_vocab,))
        shifted = logits.astype(np.float64) - float(logits.max())
        logprobs = shifted - math.log(float(np.exp(shifted).sum()))
        best: tuple[tuple[bytes, float], ...] = ()
        if top:
            ids = np.argpartition(-logprobs, top - 1)[:top]
            ids = ids[np.argsort(-logprobs[ids], kind="stable")]
            best = tuple((self._piece(int(i)), float(logprobs[i])) for i in ids)
        return TokenLogprob(self._piece(token), float(logprobs[token]), best)

    def _schema_grammar(self, schema: str) -> Any:
        """The grammar of JSON values of ``schema`` (JSON Schema text); raises EmberError when it cannot be made."""
        import llama_cpp
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        try:
            grammar = llama_cpp.LlamaGrammar.from_string(json_schema_to_gbnf(schema), verbose=False)
        except Exception as exc:  # the converter raises whatever a schema it cannot read makes it raise
            raise InvalidRequestError(
                f"The JSON schema for the reply cannot be used ({type(exc).__name__}: {exc}).", "json_schema"
            ) from None
        # llama.cpp returns no sampler for a grammar it cannot parse; a chain with a missing sampler would crash.
        vocab = self._llm._model.vocab
        probe = llama_cpp.llama_sampler_init_grammar(vocab, grammar._grammar.encode(), grammar._root.encode())
        if not probe:
            raise InvalidRequestError(
                "The JSON schema for the reply cannot be used (llama.cpp could not read its grammar).", "json_schema"
            )
        llama_cpp.llama_sampler_free(probe)
        return grammar

    def _generate(
        self,
        tokens: list[int],
        request: ChatRequest | CompletionRequest,
        stops: tuple[str, ...],
        dropped: int,
        progress: Progress,
        cancel: CancelToken,
    ) -> TextOutput:
        import llama_cpp

        s = request.sampling
        seed = s.seed if s.seed is not None else secrets.randbelow(2**32)
        llm = self._llm
        llm.set_seed(seed)  # _init_sampler's random draw takes the seed from here
        vocab = llm._model.vocab
        piece = self._piece
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        # With stop strings, hold back as many characters as a stop string could still need.
        hold = max((len(x) for x in stops), default=1) - 1
        text: list[str] = []
        shown = 0
        generated = 0
        finish = "length"
        room = self.context_tokens - len(tokens)
        limit = min(s.max_tokens, room)
        started = time.perf_counter()
        first = None
        chooser = None
        grammar = self._schema_grammar(request.json_schema) if request.json_schema else None
        if self.watermark_key is not None and s.temperature > 0:
            from engines.provenance import text_mark

            chooser = (self.watermark_chooser or text_mark.GumbelChooser)(self.watermark_key, seed)
            # llama.cpp's chain for these settings, ending in the watermark's choice instead of a random draw.
            sampler = text_mark.sampler_chain(
                llm, s.top_k, s.top_p, s.min_p, s.temperature, s.repeat_penalty, chooser, grammar
            )
        else:
            sampler = llm._init_sampler(
                top_k=s.top_k,
                top_p=s.top_p,
                min_p=s.min_p,
                temp=s.temperature,
                repeat_penalty=s.repeat_penalty,
                grammar=grammar,
            )
        made: list[int] = []  # the reply's tokens (and its end-of-turn token), for the prompt cache
        top = request.logprobs
        scored: list[tuple[int, TokenLogprob]] = []  # (where its text starts in the reply, the token's scores)
        length = 0  # characters of the reply so far
        try:
            self._prefill(tokens)
            while True:
                token = sampler.sample(llm._ctx, -1)
                made.append(token)
                if first is None:
                    first = time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                generated += 1
                chunk = decoder.decode(piece(token))
                if top is not None:
                    scored.append((length, self._logprob(token, top)))
                if chunk:
                    length += len(chunk)
                    text.append(chunk)
                    if stops:
                        joined = "".join(text)
                        # Released text was checked with `hold` characters of look-ahead, so no stop
                        # string can begin before `shown`.
                        cut = min((i for i in (joined.find(x, shown) for x in stops) if i >= 0), default=-1)
                        if cut >= 0:
                            text = [joined[:cut]]
                            finish = "stop"
                            break
                        ready = max(shown, len(joined) - hold)
                        if ready > shown:
                            progress.token(joined[shown:ready])
                            shown = ready
                    else:
                        progress.token(chunk)
                if cancel.cancelled:
                    finish = "cancelled"
                    break
                if generated >= limit:
                    break
                llm.eval([token])
        finally:
            sampler.close()
        ended = time.perf_counter()
        if finish == "cancelled":
            # Only what was shown is kept: held-back text and half a character are dropped.
            final = "".join(text)[:shown] if stops else "".join(text)
        else:
            tail = decoder.decode(b"", final=True)  # an unfinished UTF-8 sequence becomes U+FFFD
            final = "".join(text) + tail
            if stops and len(final) > shown:
                progress.token(final[shown:])
            elif not stops and tail:
                progress.token(tail)
        first = first or ended
        # A token whose text starts past the reply's end (cut at a stop string, held back at a cancel) is not in it.
        logprobs = tuple(score for start, score in scored if start < len(final))
        assert self._cache is not None
        # What the next turn of this conversation starts with, made canonical in idle time.
        self._cache.generated(self._next_turn(request, tokens, made, dropped, "".join(text)))
        output = TextOutput(
            text=final,
            finish_reason=finish,  # type: ignore[arg-type]
            prompt_tokens=len(tokens),
            generated_tokens=generated,
            dropped_messages=dropped,
            seed=seed,
            prompt_s=first - started,
            generation_s=ended - first,
            watermark=chooser.scheme if chooser is not None and not chooser.failures else "",
            logprobs=logprobs,
        )
        if finish == "cancelled":
            raise Cancelled(output)
        if generated >= room and finish == "length":
            progress.notice("The reply stopped because the context is full. Start a new conversation to go on.")
        return output
