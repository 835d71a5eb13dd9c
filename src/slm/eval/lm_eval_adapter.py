"""slm as a model of EleutherAI's lm-evaluation-harness: `--model slm --model_args pretrained=DIR`.

    slm lm-eval --model slm --model_args pretrained=runs/x --tasks hellaswag     # the CLI, through slm
    lm_eval.simple_evaluate(model="slm", model_args="pretrained=runs/x", ...)    # after `import slm.eval.lm_eval_adapter`
    lm_eval.simple_evaluate(model=SlmLM(model=live_model, tokenizer=tok), ...)   # an in-memory model, no disk copy

lm-eval 0.4 has no plugin entry point for models, so the name "slm" is registered when this module is imported
(`slm lm-eval` imports it, then hands its arguments to lm-eval's own CLI). The three request types map onto
slm's own parts: loglikelihood and loglikelihood_rolling onto `Scorer` (lm-eval's tokenisation, windows and
truncation, reproduced exactly), generate_until onto the inference engine.
"""
from __future__ import annotations

import logging

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import model_registry

from slm.eval.scoring import Scorer

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "auto": torch.float32}


class SlmLM(TemplateLM):
    backend = "causal"

    def __init__(self, pretrained: str | None = None, model=None, tokenizer=None, batch_size: int | str = 1,
                 max_batch_size: int | None = None, device: str | None = None, dtype: str = "float32",
                 max_length: int | None = None, max_gen_toks: int = 256, add_bos_token: bool | None = None,
                 **unused):
        super().__init__()
        if model is None:
            if not pretrained:
                raise ValueError("slm needs model_args pretrained=DIR (an HF directory slm can load, or a "
                                 "composition YAML)")
            from slm.eval.harness import load_model

            if dtype not in _DTYPES:
                raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
            model, loaded_tokenizer = load_model(pretrained, dtype=_DTYPES[dtype], device=_usable(device))
            tokenizer = tokenizer or loaded_tokenizer
        if tokenizer is None:
            raise ValueError("slm needs a tokenizer (the checkpoint has none; pass tokenizer=)")
        if isinstance(batch_size, str):
            batch_size = int(batch_size) if batch_size.isdigit() else (max_batch_size or 8)  # "auto": a fixed size
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._device = next(model.parameters()).device
        self.scorer = Scorer(model, tokenizer, batch_size=int(batch_size), max_length=max_length,
                             add_bos=_as_bool(add_bos_token))
        self.max_gen_toks = int(max_gen_toks)

    # ---- what lm-eval asks of a TemplateLM ----

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        return self.scorer.prefix_token_id

    @property
    def max_length(self) -> int:
        return self.scorer.max_length

    @property
    def batch_size(self) -> int:
        return self.scorer.batch_size

    @property
    def device(self):
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.scorer.encode(string, add_special_tokens)

    def tok_decode(self, tokens, **kwargs) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=kwargs.get("skip_special_tokens", True))

    def _encode_pair(self, context: str, continuation: str):
        return self.scorer.encode_pair(context, continuation)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        results = self.scorer.loglikelihood_tokens([(ctx, cont) for _, ctx, cont in requests])
        for (key, _, _), result in zip(requests, results):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        strings = [req.args[0] for req in requests]
        totals = self.scorer.loglikelihood_rolling(strings)
        for string, total in zip(strings, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        from slm.infer import Engine, SamplingParams

        engine = Engine(self.model, self.tokenizer, max_batch_size=self.batch_size)
        eos = self.tokenizer.decode([self.eot_token_id])
        prompts, params = [], []
        for req in requests:
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs or {}), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_tokens = int(kwargs.pop("max_gen_toks"))
            temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
            room = self.max_length - max_tokens
            if room < 1:
                raise ValueError(f"max_gen_toks {max_tokens} leaves no room in a {self.max_length}-token context")
            prompts.append(self.tok_encode(context)[-room:])
            params.append(SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                         top_p=float(kwargs.get("top_p") or 1.0), top_k=int(kwargs.get("top_k") or 0),
                                         stop=[s for s in until if s], seed=kwargs.get("seed")))
        texts = [c.text for c in engine.generate(prompts, params)] if prompts else []
        for req, text in zip(requests, texts):
            self.cache_hook.add_partial("generate_until", req.args, text)
        return texts


def _usable(device: str | None) -> str:
    """lm_eval's CLI asks for cuda by default; like its hf backend, fall back to the CPU when there is none."""
    if not device or (device.startswith("cuda") and not torch.cuda.is_available()):
        if device:
            logging.getLogger(__name__).warning("device %s is not available; using cpu", device)
        return "cpu"
    return device


def _as_bool(value) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes")


def register() -> None:
    """Make `--model slm` known to lm-eval (idempotent), beside lm-eval's own backends: lm-eval imports its
    built-in models only while its registry is empty, so a registry holding "slm" alone would hide hf,
    local-completions and the rest ("no model for this name found")."""
    import lm_eval.models  # noqa: F401  (registers lm-eval's own backends)

    if "slm" not in model_registry:
        model_registry.register("slm", target=SlmLM)


register()
