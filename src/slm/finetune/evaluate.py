"""How well a chat model follows the SFT format: held-out assistant loss and replies that end properly.

`reply_format(model, tokenizer, conversations)` asks the model (greedy, through slm.infer.Engine) for the last
assistant turn of each conversation and counts the replies that end with the template's end-of-turn token
within the budget, and those whose shape matches the reference (one line when the reference is one line,
a ```python fence when the reference has one). A base model that never saw the chat format scores ~0.
"""
from __future__ import annotations

import torch

from slm.finetune.data import Renderer

END_OF_TURN = "<|im_end|>"


def prompt_ids(tokenizer, messages: list[dict], template: str | None = None) -> list[int]:
    """The conversation up to (not including) its last assistant turn, plus the generation prompt."""
    renderer = Renderer(tokenizer, template)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    text = tokenizer.apply_chat_template(messages[:last], chat_template=renderer.template, tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _same_shape(reply: str, reference: str) -> bool:
    if reference.startswith("```"):
        return reply.startswith("```") and reply.rstrip().endswith("```")
    return bool(reply.strip()) and ("\n" in reply.strip()) == ("\n" in reference.strip())


def reply_format(model, tokenizer, conversations: list[list[dict]], max_tokens: int = 48,
                 end_of_turn: str = END_OF_TURN) -> dict:
    """{"ended": fraction ending with end_of_turn, "shape": fraction also of the reference's shape, "replies": [...]}."""
    from slm.infer import Engine, SamplingParams

    end_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    engine = Engine(model, tokenizer, eos_token_ids=[end_id])
    prompts = [prompt_ids(tokenizer, c) for c in conversations]
    was_training = model.training
    try:
        completions = engine.generate(prompts, SamplingParams(max_tokens=max_tokens, temperature=0.0))
    finally:
        model.train(was_training)
    ended = [bool(c.token_ids) and c.token_ids[-1] == end_id for c in completions]
    replies = [tokenizer.decode([t for t in c.token_ids if t != end_id]) for c in completions]
    references = [[m for m in c if m["role"] == "assistant"][-1]["content"] for c in conversations]
    shaped = [e and _same_shape(r, ref) for e, r, ref in zip(ended, replies, references)]
    n = max(len(conversations), 1)
    return {"ended": sum(ended) / n, "shape": sum(shaped) / n, "replies": replies}


@torch.no_grad()
def assistant_loss(model, batches) -> float:
    """Mean cross entropy per target token over the batches (SFTBatches with epochs=1)."""
    from slm.train import causal_lm_loss

    was_training = model.training
    model.eval()
    total = count = 0.0
    try:
        for batch in batches:
            loss, n = causal_lm_loss(model, batch)
            total, count = total + float(loss), count + float(n)
    finally:
        model.train(was_training)
    return total / max(count, 1.0)
