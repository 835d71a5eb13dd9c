"""TinyGSM's verifier: the generator's decoder with a scalar head, trained token by token, scored by the last token.

Training data are (prompt tokens, completion tokens, label) triples: generator samples labelled 1 when their
program returns the gold answer. The label layout (`verifier_example`): the sequence's label is the target
at EVERY completion position and no prompt position is a target,

    tokens   p0  p1  p2 | c0  c1  c2  <eos>
    targets  --  --  -- |  y   y   y    y          (-- = -100, ignored)

so the head learns, at each point of a program, the chance that it ends correct. At test time the score of
a sample is the head's output at its last token (`score`). The paper found this token-level training better
than a sequence-level label, head-only training or training from scratch; all weights are trained here.

Examples are `slm.finetune.SFTExample`s (ids + per-position integer targets), so the fine-tuning packer
batches them (block-diagonal masks keep packed samples apart) and `slm.train.Trainer` trains them with
`verifier_loss` as its loss_fn: binary cross entropy summed over targets, divided once by their count.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from slm.errors import CheckpointError
from slm.finetune import IGNORE, SFTExample

HEAD_FILE = "verifier_head.safetensors"


class Verifier(nn.Module):
    """decoder -> final-norm hidden states -> Linear(dim, 1): one correctness logit per position."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        self.head = nn.Linear(decoder.config.dim, 1)
        nn.init.zeros_(self.head.weight)  # start undecided (p = 0.5 everywhere) instead of at random scores
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_generator(cls, generator: nn.Module) -> "Verifier":
        """A verifier initialised from (a copy of) the generator, as in the paper."""
        return cls(copy.deepcopy(generator))

    @property
    def config(self):
        return self.decoder.config

    def forward(self, input_ids, position_ids=None, attention_mask=None) -> torch.Tensor:
        """Logits [B, T]: the head at every position."""
        return self.head(self.decoder.hidden_states(input_ids, position_ids, attention_mask)).squeeze(-1)

    def save(self, path: str | Path, tokenizer=None) -> Path:
        """An HF directory for the decoder (loadable by slm.load) plus the head in verifier_head.safetensors."""
        from safetensors.torch import save_file

        from slm.io import atomic_directory
        from slm.models.hf import write_model_files

        path = Path(path)
        with atomic_directory(path) as tmp:
            write_model_files(self.decoder, tmp)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, tmp / HEAD_FILE)
            (tmp / "verifier.json").write_text(json.dumps({"kind": "tinygsm-verifier", "score": "last-token"}) + "\n")
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "Verifier":
        from safetensors.torch import load_file

        from slm.models.hf import load_model

        path = Path(path)
        if not (path / HEAD_FILE).is_file():
            raise CheckpointError(f"{path} is not a verifier directory (no {HEAD_FILE})")
        verifier = cls(load_model(path, device=device))
        verifier.head.load_state_dict(load_file(path / HEAD_FILE, device=str(device)))
        return verifier.eval()


def verifier_example(prompt_ids: list[int], completion_ids: list[int], correct: bool, source: str = "") -> SFTExample:
    """The token-level label layout: the label on every completion position, the prompt masked."""
    if not completion_ids:
        raise ValueError("a verifier example needs at least one completion token")
    label = int(bool(correct))
    return SFTExample(list(prompt_ids) + list(completion_ids), [IGNORE] * len(prompt_ids) + [label] * len(completion_ids),
                      source)


def verifier_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The Trainer's loss_fn: summed BCE over the target positions and their number."""
    from slm.train import model_inputs

    logits = model(batch["input_ids"], **model_inputs(batch))
    labels = batch["labels"]
    mask = labels != IGNORE
    loss = F.binary_cross_entropy_with_logits(logits[mask].float(), labels[mask].float(), reduction="sum")
    return loss, mask.sum()


@torch.no_grad()
def score(verifier: Verifier, sequences: list[list[int]], batch_size: int = 64, pad_id: int = 0) -> list[float]:
    """P(correct) of each token sequence (prompt + completion), read at its LAST token."""
    verifier.eval()
    device = next(verifier.parameters()).device
    out: list[float] = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):  # right padding: each row's last real token is at len - 1
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        logits = verifier(ids.to(device), attention_mask=mask.to(device))
        last = torch.tensor([len(s) - 1 for s in chunk], device=device)
        out.extend(torch.sigmoid(logits[torch.arange(len(chunk), device=device), last]).tolist())
    return out
