"""Hostile chat templates: a GGUF file's template is code from a stranger, and it renders in a sandbox with budgets.

The payloads are the known server-side template injection attacks on Jinja chat templates
(llama-cpp-python's CVE-2024-34359 "Llama Drama" used ``self.__init__.__globals__``; the usual
gadgets are ``cycler``, ``joiner``, ``lipsum``, ``namespace`` and ``''.__class__.__mro__``) and the
ways a sandboxed template can still spend the machine (loops, huge strings, powers, widths,
recursion, doubling). Each must be refused with a message for a person, quickly, with nothing run
on the machine; the real templates Ember meets still render.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hostile_gguf import STRING, Value, parse_gguf, write_gguf

from engines.jobs import EventKind
from engines.studio import Studio
from engines.text.chat_template import ChatTemplate, ChatTemplateError
from engines.text.requests import ChatRequest, Message, ModelOptions, Sampling

MARKER = "EMBER_TEMPLATE_PWNED"


def _payloads(marker: Path) -> dict[str, str]:
    touch = f"touch {marker}"
    return {
        # Code execution through the objects a template can see.
        "self_globals": f"{{{{ self.__init__.__globals__.__builtins__.__import__('os').system('{touch}') }}}}",
        "cycler_globals": f"{{{{ cycler.__init__.__globals__.os.popen('{touch}').read() }}}}",
        "joiner_globals": f"{{{{ joiner.__init__.__globals__.os.popen('{touch}').read() }}}}",
        "namespace_globals": f"{{{{ namespace.__init__.__globals__.os.popen('{touch}').read() }}}}",
        "lipsum_globals": f"{{{{ lipsum.__globals__['os'].popen('{touch}').read() }}}}",
        "mro_subclasses": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
        f"{{{{ c('{touch}', shell=True) }}}}{{% endif %}}{{% endfor %}}",
        "attr_filter": f"{{{{ ()|attr('__class__')|attr('__base__')|attr('__subclasses__')() }}}}{touch}",
        "request_config": "{{ config.items() }}{{ request.application.__globals__ }}",
        "format_string": "{{ '{0.__class__.__mro__}'.format('') }}",
        "messages_mutation": "{% set _ = messages.append({'role': 'system', 'content': 'obey'}) %}x",
        # Spending the machine.
        "nested_loops": "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
        "huge_string": "{{ 'a' * 10**9 }}",
        "huge_list": "{{ ([0] * 10**9)|length }}",
        "huge_power": "{{ 9 ** 999999 }}",
        "huge_width_filter": "{{ 'a'|center(10**9) }}",
        "huge_width_method": "{{ 'a'.ljust(10**9) }}",
        "huge_format": "{{ '%999999999d' % 1 }}",
        "doubling_namespace": "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "doubling_macro": "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}"
        "{% endmacro %}{{ d('a', 64) }}",
        "endless_recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "output_flood": "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
    }


PAYLOAD_NAMES = tuple(_payloads(Path("/x")))


@pytest.mark.parametrize("name", PAYLOAD_NAMES)
def test_a_hostile_template_is_refused_quickly_with_a_message_and_runs_nothing(tmp_path: Path, name: str) -> None:
    marker = tmp_path / MARKER
    started = time.perf_counter()
    with pytest.raises(ChatTemplateError) as refused:
        ChatTemplate(_payloads(marker)[name]).render([Message("user", "hi")])
    assert time.perf_counter() - started < 5  # bounded: seconds at most, never minutes or the machine's memory
    message = str(refused.value)
    assert message.startswith("This model's chat template") and "Traceback" not in message
    assert not marker.exists()


def test_real_templates_still_render_within_the_budgets() -> None:
    chatml = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    counted = (
        "{% set ns = namespace(turns=0) %}{% for m in messages %}{% set ns.turns = ns.turns + 1 %}"
        "{{ m.role|upper }}: {{ m.content|trim }}{{ '\\n' * 2 }}{% endfor %}{{ ns.turns }} turns, "
        "{{ strftime_now('%Y')|length }} {{ '%d' % 1796414283 }} {{ 2 ** 10 }} {{ range(3)|list|length }}"
    )
    long_chat = [Message("user" if i % 2 == 0 else "assistant", "word " * 2000) for i in range(200)]
    prompt = ChatTemplate(chatml).render(long_chat)
    assert prompt.count("<|im_start|>") == 201 and len(prompt) > 2_000_000  # a 2 MB conversation renders
    assert ChatTemplate(counted).render([Message("user", " hi "), Message("assistant", "yo")]) == (
        "USER: hi\n\nASSISTANT: yo\n\n2 turns, 4 1796414283 1024 3"
    )


@pytest.mark.parametrize("name", ["self_globals", "mro_subclasses", "nested_loops", "doubling_macro"])
def test_a_gguf_file_carrying_a_hostile_template_fails_its_chat_plainly_and_the_studio_carries_on(
    studio: Studio, smol: ModelOptions, smollm2_path: str, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / MARKER
    model = parse_gguf(smollm2_path)
    model.set("tokenizer.chat_template", Value(STRING, _payloads(marker)[name]))
    hostile = tmp_path / f"template-{name}.gguf"
    write_gguf(model, hostile)
    hi = (Message("user", "hi"),)
    sampling = Sampling(temperature=0.0, max_tokens=4)

    final = studio.submit(ChatRequest(ModelOptions(str(hostile), context_tokens=256), hi, sampling=sampling)).wait(120)

    assert final is not None and final.kind is EventKind.FAILED, final
    assert "chat template" in final.data and "Traceback" not in final.data, final.data
    assert not marker.exists()
    good = studio.submit(ChatRequest(smol, hi, sampling=sampling)).wait(120)
    assert good is not None and good.kind is EventKind.RESULT, good
