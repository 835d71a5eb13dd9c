"""slm demo: the main job on the embedded corpus (the Python standard library's source)."""
from __future__ import annotations

import argparse


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="where the tokenizer and model go")
    p.add_argument("--files", type=int, default=200, help="how many stdlib files to train the tokenizer on")
    p.set_defaults(func=run)


def run(args) -> int:
    # Interim demo: tokenizer + model + a forward pass. Pretraining replaces this with a real run.
    import math
    import time

    import torch
    import torch.nn.functional as F

    import slm
    from slm.data.sources import iter_stdlib_texts
    from slm.models import Decoder, preset

    print("slm demo (interim: tokenizer + model + one forward pass; pretraining is not built yet)")
    t0 = time.time()
    tok = slm.train_tokenizer(iter_stdlib_texts(args.files), vocab_size=4096, kind="byte-bpe")
    print(f"trained a byte-level BPE with {len(tok)} tokens on {args.files} stdlib files in {time.time() - t0:.1f}s")
    model = Decoder(preset("nano", vocab_size=len(tok))).init_weights(seed=0)
    text = next(iter_stdlib_texts(1))[:2000]
    ids = torch.tensor([tok.encode(text)[:256]])
    with torch.no_grad():
        logits = model(ids)
    loss = F.cross_entropy(logits[0, :-1], ids[0, 1:]).item()
    print(f"nano model: {model.num_parameters() / 1e6:.1f}M parameters; untrained loss {loss:.3f} "
          f"(uniform guess: ln {len(tok)} = {math.log(len(tok)):.3f})")
    slm.save(model, tok, f"{args.out}/model")
    print(f"saved an HF directory at {args.out}/model (transformers loads it)")
    return 0
