import pytest

from slm.errors import SlmError
from slm.finetune.data import IGNORE, Renderer, load_sft_examples, read_jsonl, record_to_messages
from slm.tokenizer import CHATML_TEMPLATE

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi there"},
    {"role": "assistant", "content": "hello!"},
    {"role": "user", "content": "more"},
    {"role": "assistant", "content": "ok then"},
]
# A template of another family (no ChatML tokens, no generation markers): found by rendering prefixes.
PLAIN_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}### Answer: {{ m['content'] }}\n"
    "{% else %}### {{ m['role'] }}: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Answer: {% endif %}"
)


def target_text(tokenizer, example):
    return tokenizer.decode([t for t in example.labels if t != IGNORE])


def test_labels_only_on_assistant_tokens_and_shifted(tokenizer):
    renderer = Renderer(tokenizer)
    assert renderer.path == "generation-markers"
    ex = renderer(CONVERSATION)
    assert len(ex.labels) == len(ex.input_ids) and ex.labels[-1] == IGNORE
    assert target_text(tokenizer, ex) == "hello!<|im_end|>ok then<|im_end|>"
    for t, label in enumerate(ex.labels[:-1]):  # shifted: the label of position t is token t + 1
        assert label in (IGNORE, ex.input_ids[t + 1])
    # the system and user text is context only
    assert "hi there" not in target_text(tokenizer, ex) and "Be brief" not in target_text(tokenizer, ex)


def test_train_on_all_tokens(tokenizer):
    ex = Renderer(tokenizer, train_on="all")(CONVERSATION)
    assert ex.labels == ex.input_ids[1:] + [IGNORE]


def test_prompt_completion_is_a_two_turn_conversation(tokenizer):
    msgs = record_to_messages({"prompt": "hi there", "completion": "hello!", "system": "Be brief."})
    assert msgs == CONVERSATION[:3]
    convo = record_to_messages({"prompt": CONVERSATION[:2], "completion": CONVERSATION[2:3]})
    assert convo == CONVERSATION[:3]


def test_prefix_rendering_matches_the_generation_markers(tokenizer):
    """ChatML without its {% generation %} markers goes the fallback path and finds the same tokens."""
    unmarked = CHATML_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    fallback = Renderer(tokenizer, template=unmarked)
    assert fallback.path == "prefix-diff"
    a, b = Renderer(tokenizer)(CONVERSATION), fallback(CONVERSATION)
    assert a.input_ids == b.input_ids and a.labels == b.labels


def test_user_template_without_markers(tokenizer):
    renderer = Renderer(tokenizer, template=PLAIN_TEMPLATE)
    assert renderer.path == "prefix-diff"
    ex = renderer(CONVERSATION)
    assert tokenizer.decode(ex.input_ids).startswith("### system: Be brief.\n### user: hi there\n### Answer: hello!")
    assert target_text(tokenizer, ex).replace(" ", "") == "hello!okthen"


def test_template_that_is_not_prefix_stable_is_refused(tokenizer):
    reversed_template = "{% for m in messages|reverse %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(SlmError, match="generation"):
        Renderer(tokenizer, template=reversed_template)(CONVERSATION)


BAD_LINES = [
    '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    '{"messages": [{"role": "user", "content": "a"}',  # truncated JSON
    '{"text": "no conversation here"}',
    '{"messages": [{"role": "robot", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    "",
    '{"messages": [{"role": "user", "content": "only a question"}]}',
    '{"prompt": "p", "completion": 3}',
    '["not", "an", "object"]',
    '{"prompt": "p", "completion": "c"}',
]


def test_malformed_lines_are_fatal_with_file_and_line(tmp_path, tokenizer, write_jsonl):
    path = write_jsonl(tmp_path / "data.jsonl", BAD_LINES)
    with pytest.raises(SlmError, match=rf"data.jsonl:2: invalid JSON"):
        load_sft_examples(path, tokenizer, on_bad_line="error")


def test_malformed_lines_are_skipped_with_a_warning_each(tmp_path, tokenizer, write_jsonl):
    path = write_jsonl(tmp_path / "data.jsonl", BAD_LINES)
    warnings = []
    examples, report = load_sft_examples(path, tokenizer, on_bad_line="skip", warn=warnings.append)
    assert len(examples) == 2 and report.records == 2
    assert [b.where.rsplit(":", 1)[1] for b in report.bad] == ["2", "3", "4", "6", "7", "8"]
    assert "role 'robot'" in str(report.bad[2]) and "no assistant message" in str(report.bad[3])
    for line in ("2", "3", "4", "6", "7", "8"):
        assert any(f"data.jsonl:{line}:" in w for w in warnings)
    assert any("6 malformed line(s) skipped" in w for w in warnings)
    assert [e.source.rsplit(":", 1)[1] for e in examples] == ["1", "9"]


def test_not_utf8_line_is_reported(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "\xff", "completion": "c"}\n')
    with pytest.raises(SlmError, match="d.jsonl:1: not UTF-8"):
        list(read_jsonl(path))


def test_missing_file(tmp_path, tokenizer):
    with pytest.raises(SlmError, match="not found"):
        load_sft_examples(tmp_path / "nope.jsonl", tokenizer)


def test_llama_bpe_tokenizer_both_paths_agree():
    import slm
    from slm.data.sources import iter_stdlib_texts

    tok = slm.train_tokenizer(iter_stdlib_texts(6), vocab_size=600, kind="llama-bpe")
    unmarked = CHATML_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    a, b = Renderer(tok)(CONVERSATION), Renderer(tok, template=unmarked)(CONVERSATION)
    assert a.input_ids == b.input_ids and a.labels == b.labels
    assert target_text(tok, a) == "hello!<|im_end|>ok then<|im_end|>"


def test_a_conversation_the_template_refuses_is_a_bad_line(tmp_path, tokenizer, write_jsonl):
    strict = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}"
              "{% endif %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": CONVERSATION}, {"messages": CONVERSATION[1:3]}])
    with pytest.raises(SlmError, match="d.jsonl:1: the chat template refused this conversation: no system role"):
        load_sft_examples(path, tokenizer, template=strict)
    warnings = []
    examples, report = load_sft_examples(path, tokenizer, template=strict, on_bad_line="skip", warn=warnings.append)
    assert len(examples) == 1 and report.records == 1 and len(report.bad) == 1
