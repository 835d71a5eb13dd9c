"""PET / iPET (Schick & Schütze, EACL 2021 arXiv 2001.07676; NAACL 2021 arXiv 2009.07118): a masked LM as a
few-shot classifier through cloze patterns and verbalizers, the soft-label distillation and iPET's generations.

    pvp.py         patterns, verbalizers, encoding with mask slots, label scores from the MLM logits
    multitoken.py  multi-token verbalizers: max-first inference, the parallel hinge loss
    train.py       one pattern model (CE [+ auxiliary MLM, the code's alpha]) and the distilled classifier
    ensemble.py    mean / wmean merging, soft labels softmax(s / T), the KL distillation loss with T^2
    ipet.py        the next generation's training sets (labelled by the other models, sizes |T| d^j)

`slm recipe pet` (slm.recipes.pet) runs the whole pipeline; docs/recipes/pet.md describes it.
"""
from slm.finetune.pet.ensemble import distillation_loss, merge_logits, soft_labels
from slm.finetune.pet.pvp import PVP, encode_pvp, label_scores, load_pvps, pvp_tokens, read_pvps

__all__ = ["PVP", "encode_pvp", "label_scores", "load_pvps", "pvp_tokens", "read_pvps", "merge_logits",
           "soft_labels", "distillation_loss"]
