"""The phi recipe's scripted teacher answers (slm.teach.scripted.ScriptedTeacher(scripted_answer)), for the smoke
run and tests. Its answers: a lesson prompt gets a lesson made
of the extract's words in a seeded order under a title naming the topic and style; the educational-value
judge gets top log-probabilities for "Yes" and "No" that rise with the share of prose (docstring and comment
lines) in the text, so a filter has a signal to learn; anything else gets an echo.
"""
from __future__ import annotations

import math
import random
import re

from slm.teach.scripted import last_user_text


def prose_share(text: str) -> float:
    """The share of non-blank lines that are prose: comments, docstring lines, or words with no code signs."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0
    prose = sum(1 for line in lines if line.startswith("#") or line.startswith(('"""', "'''"))
                or not re.search(r"[()=\[\]{}:]", line))
    return prose / len(lines)


def scripted_answer(body: dict) -> tuple[str, list | None]:
    """(text, chat logprobs content or None) for one request body."""
    user = last_user_text(body)
    rng = random.Random(f"{body.get('seed')}\x1f{user}")
    if "educational value" in user:
        share = prose_share(user.split("Text:", 1)[-1])
        p_yes = min(max(0.05 + 0.9 * share, 1e-3), 1 - 1e-3)
        top = [{"token": "Yes", "logprob": math.log(p_yes)}, {"token": "No", "logprob": math.log(1 - p_yes)}]
        token = top[0] if p_yes >= 0.5 else top[1]
        return token["token"], [dict(token, top_logprobs=top)]
    match = re.search(r"extract from the Python standard library:\n\n(.*?)\n\n(Write .*?) about (.+?)\.",
                      user, re.S)
    if match:
        words = re.findall(r"[A-Za-z_]{3,}", match.group(1)) or ["nothing"]
        rng.shuffle(words)
        title = f"{match.group(2).split(' for ')[0].replace('Write ', '').capitalize()}: {match.group(3)}"
        body_text = " ".join(words[: max(8, body.get("max_tokens", 64) // 2)])
        return f"{title}\n\n{body_text.capitalize()}.", None
    return "echo: " + user[:200], None
