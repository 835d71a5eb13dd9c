"""Log-likelihood scoring with the model's forward pass, tokenised and windowed exactly as lm-eval does.

    scorer = Scorer(model, tokenizer, batch_size=8)
    scorer.loglikelihood([("The capital of France is", " Paris")])   # [(log p, is_greedy)]
    scorer.loglikelihood_rolling(["a whole document ..."])            # [sum of log p over every token]

Token boundaries follow lm-eval's TemplateLM: trailing spaces of the context move to the continuation; the pair
is encoded as context + continuation and split at the context's token count; an empty context is replaced by
the prefix token (BOS, else EOS). The first continuation token is predicted from the last context token.

Batching never changes a result: requests are sorted by length (longest first), right-padded (a causal model
never looks right, so padding needs no mask), and log-probabilities are taken in float32.

Encoder-decoders are scored as lm-eval's seq2seq backend scores them: context and continuation are encoded
separately, each with the tokenizer's specials (T5's </s> included), the context is the encoder's input and the
continuation the decoder's target; rolling log-likelihood (perplexity) is a decoder's measure and is refused.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

TokenRequest = tuple[Sequence[int], Sequence[int]]  # (context tokens, continuation tokens)


class Scorer:
    def __init__(self, model, tokenizer=None, batch_size: int = 8, max_length: int | None = None,
                 add_bos: bool | None = None, show_progress: bool = False):
        """add_bos: None uses the tokenizer's own rule (as lm-eval's hf backend does), True/False forces it."""
        from slm.models.hf import unwrap

        self.model = model
        self.core = unwrap(model)
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        config = getattr(self.core, "config", None)
        self.max_length = int(max_length or getattr(config, "max_seq_len", None) or 2048)
        self.add_bos = add_bos
        self.show_progress = show_progress
        from slm.models.registry import family_of

        family = family_of(self.core)
        self.seq2seq = bool(family is not None and family.seq2seq)

    # ---- tokens ----

    @property
    def prefix_token_id(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        """lm-eval's tok_encode: the tokenizer's default specials unless told, none if the text starts with BOS."""
        kwargs = {}
        if add_special_tokens is not None:
            kwargs["add_special_tokens"] = add_special_tokens
        elif self.add_bos is not None:
            kwargs["add_special_tokens"] = self.add_bos
        if add_special_tokens is None:
            bos = self.tokenizer.decode(self.prefix_token_id)
            if bos and text.startswith(bos):
                kwargs["add_special_tokens"] = False
        return self.tokenizer.encode(text, **kwargs)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if self.seq2seq:
            return self.tokenizer.encode(context), self.tokenizer.encode(continuation)
        if context == "":
            cont = self.encode(continuation, add_special_tokens=False)
            if cont and cont[0] == self.prefix_token_id:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        context_ids = self.encode(context)
        return context_ids, whole[len(context_ids):]

    # ---- scoring ----

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), whether greedy decoding would produce it) per pair."""
        return self.loglikelihood_tokens([self.encode_pair(c, x) for c, x in pairs])

    def loglikelihood_rolling(self, texts: Sequence[str], return_counts: bool = False):
        """Sum of log p over every token of each text, in disjoint windows of max_length (lm-eval's rolling)."""
        if self.seq2seq:
            from slm.errors import SlmError

            raise SlmError("rolling log-likelihood (perplexity tasks) is for decoders; score an encoder-decoder with "
                           "multiple_choice or generate tasks")
        windows, owner, counts = [], [], []
        for i, text in enumerate(texts):
            tokens = self.encode(text)
            counts.append(len(tokens))
            for window in rolling_windows(tokens, self.prefix_token_id, self.max_length):
                windows.append(window)
                owner.append(i)
        totals = [0.0] * len(texts)
        for i, (logprob, _) in zip(owner, self.loglikelihood_tokens(windows)):
            totals[i] += logprob
        return (totals, counts) if return_counts else totals

    @torch.no_grad()
    def loglikelihood_tokens(self, requests: Sequence[TokenRequest]) -> list[tuple[float, bool]]:
        for context, continuation in requests:
            if not context or not continuation:
                raise ValueError("each request needs at least one context token and one continuation token")
            if len(continuation) > self.max_length:
                raise ValueError(f"a continuation of {len(continuation)} tokens exceeds max_length {self.max_length}")
        order = sorted(range(len(requests)),
                       key=lambda i: (-(len(requests[i][0]) + len(requests[i][1])),
                                      tuple(requests[i][0]) + tuple(requests[i][1])))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in self._batches(order):
                for i, result in zip(batch, self._score_batch([requests[i] for i in batch])):
                    results[i] = result
        finally:
            self.model.train(was_training)
        return results  # type: ignore[return-value]

    def _batches(self, order: list[int]) -> Iterator[list[int]]:
        bar = None
        if self.show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(order), desc="scoring", unit="req")
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            yield batch
            if bar:
                bar.update(len(batch))
        if bar:
            bar.close()

    def _score_batch(self, batch: list[TokenRequest]) -> list[tuple[float, bool]]:
        device = next(self.core.parameters()).device
        if self.seq2seq:
            return self._score_seq2seq(batch, device)
        inputs, spans = [], []
        for context, continuation in batch:
            # lm-eval: keep the last max_length + 1 tokens, feed all but the last one.
            tokens = (list(context) + list(continuation))[-(self.max_length + 1):][:-1]
            inputs.append(tokens)
            spans.append((len(tokens), list(continuation)))
        width = max(len(t) for t in inputs)
        ids = torch.zeros((len(inputs), width), dtype=torch.long)
        for row, tokens in enumerate(inputs):
            ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        # Only positions from the earliest continuation on need logits (the LM head is a large share of a small
        # model's forward); `logits_to_keep` asks the model for just those, through its own forward.
        first = min(length - len(continuation) for length, continuation in spans)
        logits = self.model(ids.to(device), logits_to_keep=width - first) if first > 0 else self.model(ids.to(device))
        offset = width - logits.shape[1]
        return [_continuation_score(logits[row, length - len(continuation) - offset:length - offset], continuation)
                for row, (length, continuation) in enumerate(spans)]


    def _score_seq2seq(self, batch: list[TokenRequest], device) -> list[tuple[float, bool]]:
        from slm.finetune.seq2seq import Pair, collate_pairs
        from slm.models.seq2seq import shift_right

        cfg = self.core.config
        pairs = [Pair(list(context)[-self.max_length:], list(continuation)) for context, continuation in batch]
        b = {k: v.to(device) for k, v in collate_pairs(pairs, cfg.pad_token_id or 0).items()}
        logits = self.model(b["input_ids"], attention_mask=b["attention_mask"],
                            decoder_input_ids=shift_right(b["labels"], cfg.decoder_start_token_id, cfg.pad_token_id or 0))
        return [_continuation_score(logits[row, :len(continuation)], continuation)
                for row, (_, continuation) in enumerate(batch)]


def _continuation_score(logits: torch.Tensor, continuation: Sequence[int]) -> tuple[float, bool]:
    """(sum of log p of the continuation's tokens, whether each is the argmax) from the logits predicting them."""
    logprobs = logits.float().log_softmax(-1)
    target = torch.tensor(list(continuation), device=logprobs.device)
    greedy = bool((logprobs.argmax(-1) == target).all())
    return float(logprobs.gather(-1, target[:, None]).sum()), greedy


def rolling_windows(tokens: Sequence[int], prefix_token: int, max_length: int,
                    context_len: int = 1) -> Iterator[tuple[list[int], list[int]]]:
    """(context, continuation) windows that predict every token once; lm-eval's get_rolling_token_windows
    followed by make_disjoint_window."""
    if not 1 <= context_len <= max_length:
        raise ValueError(f"context_len must be in [1, max_length], got {context_len}")
    tokens = list(tokens)
    if not tokens:
        return
    pred_len = max_length - context_len + 1
    first = min(max_length, len(tokens))
    yield _disjoint([prefix_token] + tokens[:first - 1], tokens[:first])
    predicted = first
    while predicted < len(tokens):
        window_pred = min(len(tokens) - predicted, pred_len)
        end = predicted + window_pred
        yield _disjoint(tokens[end - max_length - 1:end - 1], tokens[end - window_pred:end])
        predicted += window_pred


def _disjoint(context: list[int], continuation: list[int]) -> tuple[list[int], list[int]]:
    return context[:len(context) - (len(continuation) - 1)], continuation
