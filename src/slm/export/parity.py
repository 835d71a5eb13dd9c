"""Does llama.cpp compute what slm computes? Load a GGUF file with llama-cpp-python and compare.

    report = compare_with_llamacpp(model, tokenizer, "model.gguf", ["def main("], n_tokens=32)

Three checks per prompt: llama.cpp tokenizes the text into the same ids; its greedy tokens equal slm's
(slm's own decode loop, slm.infer.Engine); and, teacher-forced along llama.cpp's path, how often slm's
argmax agrees and how far the logits are apart. llama-cpp-python is optional (`make check-gguf`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from slm.errors import SlmError


@dataclass
class PromptParity:
    prompt: str
    slm_prompt_ids: list[int]
    llamacpp_prompt_ids: list[int]
    slm_tokens: list[int]
    llamacpp_tokens: list[int]
    forced_agreement: float  # share of steps where slm's argmax on llama.cpp's prefix is llama.cpp's token
    max_logit_diff: float  # max |slm - llama.cpp| over all steps and the vocabulary

    @property
    def tokenization_match(self) -> bool:
        return self.slm_prompt_ids == self.llamacpp_prompt_ids

    @property
    def greedy_match(self) -> bool:
        return self.slm_tokens == self.llamacpp_tokens

    @property
    def common_prefix(self) -> int:
        n = 0
        for a, b in zip(self.slm_tokens, self.llamacpp_tokens):
            if a != b:
                break
            n += 1
        return n


@dataclass
class ParityReport:
    prompts: list[PromptParity] = field(default_factory=list)

    @property
    def all_match(self) -> bool:
        return all(p.tokenization_match and p.greedy_match for p in self.prompts)

    def summary(self) -> str:
        n = sum(len(p.slm_tokens) for p in self.prompts)
        same = sum(p.common_prefix for p in self.prompts)
        forced = np.mean([p.forced_agreement for p in self.prompts])
        tok = sum(p.tokenization_match for p in self.prompts)
        return (f"prompts tokenized alike: {tok}/{len(self.prompts)}; greedy tokens equal before the first "
                f"divergence: {same}/{n}; teacher-forced argmax agreement {forced:.1%}; "
                f"max |logit diff| {max(p.max_logit_diff for p in self.prompts):.2e}")


def load_llamacpp(path, n_ctx: int = 512, n_threads: int | None = None):
    """A llama_cpp.Llama for greedy checks (logits kept for every position)."""
    try:
        import llama_cpp
    except ImportError:
        raise SlmError("the llama.cpp check needs llama-cpp-python: `make check-gguf` installs it "
                       "(a source build of about 10 minutes)") from None
    threads = n_threads or torch.get_num_threads()
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                           logits_all=True, verbose=False)


def llamacpp_greedy(llm, prompt_ids: list[int], n_tokens: int) -> tuple[list[int], np.ndarray]:
    """Greedy tokens and the logits [n_tokens, vocab] each was chosen from."""
    llm.reset()
    llm.eval(list(prompt_ids))
    tokens, logits = [], []
    for _ in range(n_tokens):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        token = int(row.argmax())
        tokens.append(token)
        logits.append(row)
        llm.eval([token])
    return tokens, np.stack(logits)


def slm_greedy(model, prompt_ids: list[int], n_tokens: int) -> list[int]:
    """slm's own greedy decode (the inference engine's prefill + KV-cache loop), EOS ignored."""
    from slm.infer.engine import Engine
    from slm.infer.sampling import SamplingParams

    [completion] = Engine(model).generate([list(prompt_ids)], SamplingParams(max_tokens=n_tokens, ignore_eos=True))
    return completion.token_ids


@torch.inference_mode()
def compare_with_llamacpp(model, tokenizer, gguf_path, prompts: list[str], n_tokens: int = 32,
                          llm=None) -> ParityReport:
    llm = llm or load_llamacpp(gguf_path, n_ctx=min(model.config.max_seq_len, 2048))
    report = ParityReport()
    for prompt in prompts:
        ids = tokenizer.encode(prompt)
        theirs_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        ours = slm_greedy(model, ids, n_tokens)
        theirs, their_logits = llamacpp_greedy(llm, ids, n_tokens)
        # Teacher-forced along llama.cpp's path: one forward gives slm's logits for every step.
        path = torch.tensor([ids + theirs[:-1]])
        our_logits = model(path).float()[0, len(ids) - 1:].numpy()
        report.prompts.append(PromptParity(
            prompt=prompt, slm_prompt_ids=ids, llamacpp_prompt_ids=list(theirs_ids), slm_tokens=ours,
            llamacpp_tokens=theirs, forced_agreement=float((our_logits.argmax(-1) == np.array(theirs)).mean()),
            max_logit_diff=float(np.abs(our_logits - their_logits).max())))
    return report
