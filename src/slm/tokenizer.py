"""Tokenizers: train a byte-level BPE (GPT-2 / LiteLlama style) or a Llama-style BPE with byte fallback,
and load tokenizer.json or SentencePiece tokenizer.model files.

The tokenizer object everywhere in slm is a `transformers.PreTrainedTokenizerFast`, so a tokenizer slm
saves is one `AutoTokenizer` loads (same ids), and chat templates render through transformers' Jinja.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

from slm.errors import CheckpointError, SlmError

Kind = Literal["byte-bpe", "llama-bpe", "roberta-bpe", "t5-bpe"]

# ChatML, with {% generation %} markers so that transformers can return the assistant-token mask.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]
BYTE_BPE_SPECIALS = {"eos": "<|endoftext|>", "bos": "<|endoftext|>", "pad": "<|pad|>", "unk": None}
LLAMA_SPECIALS = {"unk": "<unk>", "bos": "<s>", "eos": "</s>", "pad": "<pad>"}
# RoBERTa's layout (fairseq's dictionary order): <s>=0, <pad>=1, </s>=2, <unk>=3, then <mask>.
ROBERTA_SPECIALS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}
SPACE = "\u2581"  # SentencePiece's visible space
# T5's layout: <pad>=0 (also the decoder's start), </s>=1, <unk>=2; 100 sentinels at the very top, <extra_id_0> last.
T5_SPECIALS = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
T5_SENTINELS = 100


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192, kind: Kind = "byte-bpe",
                    min_frequency: int = 2, show_progress: bool = False, split_digits: bool = False):
    """Train a BPE tokenizer on `texts` and return it as a PreTrainedTokenizerFast with a ChatML template.

    split_digits (byte-bpe, t5-bpe): every digit is a token of its own, as in Llama and PaLM, so a number is spelled
    the same wherever it stands ("$7", "= 7", "17") and copying or comparing numbers is token identity.
    (GGUF export names this split "smollm", as llama.cpp does.)
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if kind == "byte-bpe":
        specials = list(dict.fromkeys(v for v in BYTE_BPE_SPECIALS.values() if v)) + CHAT_TOKENS
        if vocab_size < len(specials) + 256 + 1:
            raise SlmError(f"vocab_size {vocab_size} is too small for a byte-level BPE (needs > {len(specials) + 257})")
        tok = Tokenizer(models.BPE())
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                             if split_digits else byte_level)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
        tok.train_from_iterator(texts, trainer)
        names = BYTE_BPE_SPECIALS
    elif kind == "llama-bpe":
        if split_digits:
            raise SlmError("split_digits is for kind='byte-bpe' or 't5-bpe'")
        tok = _train_llama_bpe(texts, vocab_size, min_frequency, show_progress)
        names = LLAMA_SPECIALS
    elif kind == "roberta-bpe":
        return _train_roberta_bpe(texts, vocab_size, min_frequency, show_progress)
    elif kind == "t5-bpe":
        return _train_t5_bpe(texts, vocab_size, min_frequency, show_progress, split_digits)
    else:
        raise SlmError(f"unknown tokenizer kind {kind!r}; choose 'byte-bpe', 'llama-bpe', 'roberta-bpe' or 't5-bpe'")
    return _wrap(tok, names)


def _train_roberta_bpe(texts, vocab_size, min_frequency, show_progress):
    """GPT-2's byte-level BPE with RoBERTa's specials and template: `<s> A </s>`, pairs `<s> A </s></s> B </s>`,
    and a <mask> token, for the encoder family (no chat template: encoders do not chat)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(ROBERTA_SPECIALS.values())
    if vocab_size < len(specials) + 256 + 1:
        raise SlmError(f"vocab_size {vocab_size} is too small for a byte-level BPE (needs > {len(specials) + 257})")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
    tok.train_from_iterator(texts, trainer)
    bos, eos = ROBERTA_SPECIALS["bos"], ROBERTA_SPECIALS["eos"]
    tok.post_processor = processors.RobertaProcessing((eos, tok.token_to_id(eos)), (bos, tok.token_to_id(bos)),
                                                      trim_offsets=False, add_prefix_space=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(tokenizer_object=tok, cls_token=bos, sep_token=eos,
                                   **{f"{k}_token": v for k, v in ROBERTA_SPECIALS.items()})


def _train_t5_bpe(texts, vocab_size, min_frequency, show_progress, split_digits=False):
    """A byte-level BPE in T5's layout, for encoder-decoders: every encoded text ends with </s> (T5 appends it to
    inputs and targets alike) and the sentinels span corruption uses are the top 100 ids, as in T5's vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(T5_SPECIALS.values())
    if vocab_size < len(specials) + T5_SENTINELS + 256 + 1:
        raise SlmError(f"vocab_size {vocab_size} is too small for a T5 byte-level BPE "
                       f"(needs > {len(specials) + T5_SENTINELS + 257})")
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - T5_SENTINELS, min_frequency=min_frequency,
                                  special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=show_progress)
    tok.train_from_iterator(texts, trainer)
    sentinels = [f"<extra_id_{i}>" for i in reversed(range(T5_SENTINELS))]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials + sentinels])
    eos = T5_SPECIALS["eos"]
    tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                       special_tokens=[(eos, tok.token_to_id(eos))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=sentinels[::-1],
                                   **{f"{k}_token": v for k, v in T5_SPECIALS.items()})


def _train_llama_bpe(texts, vocab_size, min_frequency, show_progress):
    """Llama-2's vocabulary layout: '▁' for spaces, <s>/</s>/<unk>, <0xNN> byte fallback tokens, BOS added.

    Unlike SentencePiece there is no dummy-prefix space: that prefix makes decoding lossy (a leading space
    vanishes, and a space appears after every special token such as <|im_start|>). llama.cpp reads this
    layout with tokenizer.ggml.add_space_prefix = false.
    """
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = [LLAMA_SPECIALS[k] for k in ("unk", "bos", "eos", "pad")] + CHAT_TOKENS
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    reserved = len(specials) + len(byte_tokens)
    if vocab_size <= reserved + 64:
        raise SlmError(f"vocab_size {vocab_size} is too small for a Llama-style BPE (needs > {reserved + 64})")
    pre = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=True)
    # Train the merges alone, then lay the vocabulary out as Llama does: specials, 256 bytes, merges.
    base = Tokenizer(models.BPE(unk_token=LLAMA_SPECIALS["unk"]))
    base.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - reserved, min_frequency=min_frequency,
                                  limit_alphabet=1000, show_progress=show_progress)
    base.train_from_iterator(texts, trainer)
    learned = json.loads(base.to_str())["model"]
    vocab = {t: i for i, t in enumerate(specials + byte_tokens)}
    for token, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in learned["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=LLAMA_SPECIALS["unk"], byte_fallback=True,
                               fuse_unk=True))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    bos = LLAMA_SPECIALS["bos"]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, vocab[bos])])
    return tok


def _wrap(tok, names: dict):
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    extra = [AddedToken(t, special=True, normalized=False) for t in CHAT_TOKENS]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in names.values() if t] + extra)
    kwargs = {f"{k}_token": v for k, v in names.items() if v}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def has_tokenizer_files(path: Path) -> bool:
    return any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


def load_tokenizer(path: str | Path, required: bool = True):
    """Load tokenizer.json / tokenizer_config.json or a SentencePiece tokenizer.model from a local directory."""
    path = Path(path)
    if path.is_file() and path.name == "tokenizer.model":
        path = path.parent
    if not path.is_dir():
        raise SlmError(f"tokenizer directory not found: {path}")
    if not has_tokenizer_files(path):
        if required:
            raise SlmError(f"{path} has no tokenizer (tokenizer.json, tokenizer_config.json or tokenizer.model)")
        return None
    from transformers import AutoTokenizer, LlamaTokenizer

    try:
        if not (path / "tokenizer.json").is_file() and not (path / "tokenizer_config.json").is_file():
            return LlamaTokenizer.from_pretrained(str(path))  # bare SentencePiece model: Llama's convention
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as e:  # transformers raises many types for a bad file
        raise CheckpointError(f"{path}: cannot load the tokenizer ({type(e).__name__}: {e})") from None


def check_compatible(cfg, tokenizer, where: str = "model") -> None:
    """A tokenizer that emits ids past the embedding table would index out of range: refuse early."""
    n = len(tokenizer)
    if n > cfg.vocab_size:
        raise SlmError(f"{where}: the tokenizer has {n} tokens but the model's embedding has only {cfg.vocab_size} "
                       "rows; they do not belong together (train the model with this tokenizer's vocab size)")


def save_tokenizer(tokenizer, path: str | Path) -> Path:
    from slm.io import atomic_directory

    path = Path(path)
    with atomic_directory(path) as tmp:
        tokenizer.save_pretrained(str(tmp))
    return path
