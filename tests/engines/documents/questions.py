"""Questions a person might ask of Ember's own documentation, each with the passage that answers it.

Written from the texts (README.md, resources/licenses/README.md and module docstrings), in the
words a person would use rather than the text's own, before any retrieval result was seen. An
answer is (file in the test corpus, a snippet of the text that answers): a retrieved passage
counts as a hit when it is from that file and overlaps the snippet. Snippets are matched with
any whitespace between their words, so a line break in the source does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    text: str
    answers: tuple[tuple[str, str], ...]  # (file in the corpus, snippet of the answering passage)


README = "README.md"
LICENSES = "licenses/README.md"


def _q(text: str, *answers: tuple[str, str]) -> Question:
    return Question(text, answers)


QUESTIONS: tuple[Question, ...] = (
    # -- README: setting up ---------------------------------------------------------------------
    _q("How do I install Ember and open the window?", (README, "one command installs everything into `.venv`")),
    _q("How long does the first build of llama-cpp-python take?", (README, "about 8 minutes on 2 cores")),
    _q("What should I paste into a bug report?", (README, "paste what it prints into a bug report")),
    # -- README: chat ------------------------------------------------------------------------------
    _q("What happens when I press Stop while a reply is being written?", (README, "ends the reply at the next token")),
    _q(
        "What happens when a conversation gets longer than the model's context window?",
        (README, "the oldest turns are dropped with a visible"),
    ),
    _q(
        "Where are my conversations saved and can I export them?",
        (README, "SQLite in the platform's user data folder"),
    ),
    _q(
        "Does a segfault in the model take the whole app down?",
        (README, "A crash in native code (a segfault, an abort, an out-of-memory kill) ends one job"),
    ),
    _q(
        "Will the same seed give me the same reply on a different computer?",
        (README, "where it may not (another CPU or backend)"),
        ("modules/engines.reproducibility.txt", "Another CPU's instruction set picks other kernels"),
    ),
    # -- README: safety ------------------------------------------------------------------------------
    _q(
        "Which kinds of content does the safety filter stop?",
        (README, "sexual content involving minors (always blocked, no setting allows it)"),
    ),
    _q(
        "Can people get around the filter by writing words with spaces or numbers instead of letters?",
        (README, "rules over normalised text that see through obfuscation"),
        ("modules/engines.safety.normalize.txt", "undoes all of these"),
    ),
    _q(
        "Can I add Llama Guard as an extra judge for safety?",
        (README, "a Llama Guard 3 or ShieldGemma GGUF, run through the text engine as a judge"),
    ),
    _q("Does the audit log keep the text of what was blocked?", (README, "never the content of what was blocked")),
    # -- README: watermarks ------------------------------------------------------------------------
    _q(
        "Does the invisible image watermark survive JPEG compression and cropping?",
        (README, "survives JPEG 50, resizing to half, a 10% crop and brightness changes"),
    ),
    _q("Are replies made with greedy decoding watermarked?", (README, "Greedy replies are not marked.")),
    _q(
        "How can I tell whether a picture was made by Ember?",
        (README, "drop files on the Verify panel, or run `main.py verify FILE...`"),
    ),
    _q(
        "Which text watermark did the benchmark pick as the best?",
        (README, "**Gumbel-max (Ember's choice)**"),
    ),
    # -- README: images ------------------------------------------------------------------------------
    _q(
        "Which samplers can I choose for image generation?",
        (README, "Euler, Euler ancestral, DPM++ 2M (Karras sigmas), DDIM and LCM"),
    ),
    _q(
        "How close are Ember's images to what diffusers makes?",
        (README, "equals diffusers' own torch pipeline within 5e-6"),
    ),
    _q(
        "How do I turn a diffusers checkpoint into ONNX?",
        (README, "`main.py convert SOURCE --to onnx [--fp16 | --int8]`"),
    ),
    _q(
        "Has the image generation been tested on an NVIDIA card?",
        (README, "the image path has not yet run on a GPU"),
        (README, "no NVIDIA GPU was available to the session that built the image engine"),
    ),
    # -- README: models ------------------------------------------------------------------------------
    _q("Where do downloaded models go on disk?", (README, "go into the Hugging Face cache that other tools share")),
    _q(
        "Can a paused model download continue later?",
        (README, "pause and resume (a Range request continues the part on disk)"),
    ),
    _q("Does importing a model make a copy of the file?", (README, "is used where it is, never copied")),
    _q(
        "How accurate is the memory estimate for the built-in models?",
        (README, "the estimate is within 6% of the measured peak"),
        ("modules/engines.models.fit.txt", "the estimates are within 6%"),
    ),
    # -- README: speech, dictation ----------------------------------------------------------------
    _q(
        "Which voices come with Ember for reading text aloud?",
        (README, 'two voices ship with Ember,\n  "heart" (hibari-tts'),
    ),
    _q(
        "Does Ember need espeak-ng to speak with piper voices?",
        (README, "is read by hibari's own phonemizer (no espeak-ng, nothing GPL)"),
    ),
    _q(
        "What speech recognition model does dictation use?",
        (README, "Whisper tiny.en (CTranslate2, run by faster-whisper, on the CPU)"),
    ),
    _q("Can dictation understand French or German?", (README, "tiny.en knows English only and says so")),
    _q(
        "Which word did Whisper get wrong in the dictation benchmark?",
        (README, 'The one error in 64 words is "harbour" heard as "harbor".'),
    ),
    # -- README: upscaling, music --------------------------------------------------------------------
    _q(
        "Which upscaling models are included?",
        (README, "five upscalers ship with Ember (AnimeVideo v3 x2/x3/x4, x4plus-anime"),
    ),
    _q("How does upscaling avoid visible seams between tiles?", (README, "Overlapping, blended tiles")),
    _q(
        "What musical styles can the composer write in?",
        (README, "style (pop, ballad,\n  rock, waltz, lo-fi)"),
    ),
    _q("Am I allowed to use MusicGen small commercially?", (README, "CC-BY-NC-4.0, non-commercial")),
    _q(
        "How does Ember make music longer than thirty seconds?",
        (README, "Pieces longer than 30 s are made in windows that each continue the\n  last 12 s"),
    ),
    _q(
        "Can I turn a tune I hum into MIDI notes?",
        (README, "Spotify's Basic Pitch (`nmp.onnx`, Apache-2.0) turns a recording"),
    ),
    # -- README: CPUs, command line, architecture ------------------------------------------------------
    _q(
        "Why is llama.cpp not compiled with -march=native?",
        (README, "AMX matrix kernels segfault on any batch of two tokens or more"),
    ),
    _q("How can I force a particular CPU kernel variant?", (README, "`EMBER_LLAMA_CPU_VARIANT=haswell` forces one")),
    _q(
        "How many CPU threads does generation use by default?",
        (README, "CPU inference uses the physical cores but one"),
    ),
    _q(
        "What exit status does a command return when the safety filter blocks something?",
        (README, "exit 3\nwhen something is blocked"),
    ),
    _q(
        "How does Ember's generation speed compare with plain llama-cpp-python?",
        (README, "generation tokens/s ratio (paired)"),
    ),
    _q("What do I need to change to add a new modality?", (README, "Adding a modality touches its package")),
    _q(
        "Which part of the code turns queue events into Qt signals?",
        (README, "`desktop/bridge.py` is the only place queue events become Qt signals"),
        ("modules/desktop.bridge.txt", "queue events become Qt signals on the GUI thread"),
    ),
    _q("Does the window freeze while a reply streams in?", (README, "the longest stall of the Qt event loop")),
    # -- licences ----------------------------------------------------------------------------------
    _q("Why is NudeNet not bundled?", (LICENSES, "NudeNet (its licence file is AGPL-3.0")),
    _q(
        "What must be passed on when Gemma 3 is redistributed?",
        (LICENSES, "redistribution must pass on the Gemma terms and their use restrictions"),
    ),
    _q(
        "Why does Ember not decode audio with PyAV?",
        (LICENSES, "PyAV, whose wheels link GPL codecs"),
    ),
    _q(
        "How does Ember meet the LGPL of Qt?",
        (LICENSES, "Ember links Qt dynamically and its installers keep the Qt libraries as separate"),
    ),
    _q(
        "Under which licence are the open-nsfw model weights?",
        (LICENSES, "model weights BSD-2-Clause (Yahoo open_nsfw"),
    ),
    _q(
        "Is the dataset behind the joe voice freely available?",
        (LICENSES, "is given out only under a signed licence agreement"),
    ),
    # -- module docstrings --------------------------------------------------------------------------------
    _q(
        "Why would reusing a cached prompt change the logits in llama.cpp?",
        ("modules/engines.text.prompt_cache.txt", "a token evaluated alone takes other matrix kernels"),
    ),
    _q(
        "How does the text watermark detector compute its p-value?",
        ("modules/engines.provenance.text_mark.txt", "reports the exact Gamma\ntail of the sum"),
    ),
    _q(
        "How is word error rate calculated?",
        ("modules/engines.dictation.wer.txt", "WER = (substitutions + deletions + insertions) / words said"),
    ),
    _q(
        "In what order does a job send its events?",
        ("modules/engines.jobs.txt", "Every job produces events in this order"),
    ),
    _q(
        "How are files saved so that they are never half written?",
        ("modules/engines.atomic.txt", "a temporary file in the same folder, then a rename"),
    ),
    _q(
        "How big is the KV cache of a model estimated to be?",
        ("modules/engines.models.fit.txt", "The KV\ncache is ``context"),
    ),
    _q(
        "How long does the safety text normalisation take per call?",
        ("modules/engines.safety.normalize.txt", "one call on a 300-character window takes about\n0.1 ms"),
    ),
)
