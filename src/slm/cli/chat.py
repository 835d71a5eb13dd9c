"""slm chat DIR: an interactive chat in the terminal (ChatML template), streaming the replies."""
from __future__ import annotations

import argparse

from slm.cli.generate import add_model_args, add_sampling_args


def register(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_sampling_args(p, max_tokens=256)
    p.add_argument("--system", default=None, help="a system message that starts the conversation")
    p.set_defaults(func=run, temperature=0.7, top_p=0.9, repetition_penalty=1.1)


def run(args) -> int:
    import sys

    from slm.cli.generate import load_engine, sampling_params
    from slm.errors import SlmError

    engine = load_engine(args, warm_up=True)
    tok = engine.tokenizer
    if not getattr(tok, "chat_template", None):
        raise SlmError(f"{args.model}'s tokenizer has no chat template")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    params = sampling_params(args, stop_token_ids=[end] if isinstance(end, int) else [])
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    print("slm chat: type a message; /reset clears the conversation, /exit (or Ctrl-D) quits.", file=sys.stderr)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if line.strip() in ("/exit", "/quit"):
            return 0
        if line.strip() == "/reset":
            history = []
            continue
        if not line.strip():
            continue
        history.append({"role": "user", "content": line})
        ids = _fit(tok, system, history, engine.max_seq_len, args.max_tokens)
        if ids is None:
            print("[the message alone is longer than the model's context; try a shorter one]", file=sys.stderr)
            history.pop()
            continue
        sys.stdout.write("assistant> ")
        reply = ""
        for event in engine.stream([ids], params):
            reply += event.text
            sys.stdout.write(event.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": reply})


def _fit(tok, system, history, context, max_tokens):
    """Token ids of the conversation, dropping the oldest turns until the reply has room."""
    while history:
        text = tok.apply_chat_template(system + history, add_generation_prompt=True, tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if context is None or len(ids) + min(max_tokens, 16) <= context:
            return ids
        if len(history) == 1:
            return None
        del history[:2 if len(history) > 2 else 1]
    return None
