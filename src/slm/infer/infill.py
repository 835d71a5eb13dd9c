"""Filling gaps in a text with a UL2-trained model (slm.objectives.denoisers): the R denoiser's format at inference.

    from slm.infer.infill import infill
    infill(model, tokenizer, "def add(a, b):\n    return <gap>\n")   # -> {"text": ..., "spans": [...]}

The text's gaps become sentinels behind the [NLU] mode token: `[NLU] before <extra_id_0> after` for a decoder (the
prompt is prefilled as the prefix LM saw it in training, bidirectionally, then the spans decode causally from
the cache), or `[NLU] before <extra_id_0> after </s>` as an encoder-decoder's inputs. The model answers
`<extra_id_0> span <extra_id_1> span ... </s>`; each span goes back into its gap. `slm generate --infill` is the
same call from the command line.
"""
from __future__ import annotations

import torch

from slm.errors import SlmError

GAP = "<gap>"


def infill_prompt(tokenizer, text: str, gap: str = GAP) -> tuple[list[int], int]:
    """(the R denoiser's inputs for `text`, without </s>; the number of gaps)."""
    from slm.objectives.denoisers import ul2_tokens

    tokens = ul2_tokens(tokenizer)
    pieces = text.split(gap)
    if len(pieces) < 2:
        raise SlmError(f"the text has no gap to fill: mark each with {gap!r}")
    if len(pieces) - 1 > tokens.n_sentinels:
        raise SlmError(f"{len(pieces) - 1} gaps, but the tokenizer has only {tokens.n_sentinels} sentinels")
    ids = [tokens.modes["R"]]
    for k, piece in enumerate(pieces):
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"] if piece else []
        if k < len(pieces) - 1:
            ids.append(tokens.sentinel_top - 1 - k)
    return ids, len(pieces) - 1


@torch.no_grad()
def greedy_targets(model, prompt: list[int], eos_id: int, max_tokens: int, stop_after: int | None = None,
                   sentinel_top: int = 0, n_sentinels: int = 0) -> list[int]:
    """Greedy target tokens for a denoiser prompt: an encoder-decoder reads it as inputs (+ </s>); a decoder
    prefills it with the prefix-LM mask and continues causally. Stops at </s>, after max_tokens, or on the
    sentinel that would open span number `stop_after` (all gaps filled)."""
    from slm.models import make_attention_mask
    from slm.models.registry import family_of

    family = family_of(model)
    device = next(model.parameters()).device
    out: list[int] = []

    def done(token: int) -> bool:
        if token == eos_id:
            return True
        return stop_after is not None and token == sentinel_top - 1 - stop_after and n_sentinels > stop_after

    if family is not None and family.seq2seq:
        inputs = torch.tensor([prompt + [eos_id]], device=device)
        start = model.config.decoder_start_token_id
        for _ in range(max_tokens):
            decoder = torch.tensor([[start] + out], device=device)
            token = int(model(inputs, decoder_input_ids=decoder)[0, -1].argmax())
            if done(token):
                break
            out.append(token)
        return out
    if len(prompt) + max_tokens > model.config.max_seq_len:
        raise SlmError(f"a prompt of {len(prompt)} tokens plus {max_tokens} to generate exceeds the model's "
                       f"{model.config.max_seq_len}")
    cache = model.new_cache(1, len(prompt) + max_tokens)
    ids = torch.tensor([prompt], device=device)
    mask = make_attention_mask(len(prompt), 0, prefix_lengths=torch.tensor([len(prompt)]), device=device)
    logits = model(ids, attention_mask=mask, cache=cache, logits_to_keep=1)
    for _ in range(max_tokens):
        token = int(logits[0, -1].argmax())
        if done(token):
            break
        out.append(token)
        logits = model(torch.tensor([[token]], device=device), cache=cache)
    return out


def infill(model, tokenizer, text: str, gap: str = GAP, max_tokens: int = 64) -> dict:
    """Fill every `gap` in `text` greedily: {"text": the filled text, "spans": the decoded span of each gap}."""
    from slm.objectives.denoisers import ul2_tokens
    from slm.objectives.span_corruption import target_spans

    tokens = ul2_tokens(tokenizer)
    prompt, gaps = infill_prompt(tokenizer, text, gap)
    answer = greedy_targets(model, prompt, tokens.eos_id, max_tokens, stop_after=gaps,
                            sentinel_top=tokens.sentinel_top, n_sentinels=tokens.n_sentinels)
    spans = [tokenizer.decode(s) for s in target_spans(answer, tokens.sentinel_top, tokens.n_sentinels, gaps)]
    pieces = text.split(gap)
    filled = pieces[0] + "".join(span + piece for span, piece in zip(spans, pieces[1:]))
    return {"text": filled, "spans": spans}
