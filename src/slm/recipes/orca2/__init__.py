"""Orca 2 at CPU scale (issue #33), in progress: the parts below are built and tested; the recipe that trains
the three students in progressive stages and evaluates them is not registered yet.

  prompts   strategies, task families with their detailed instructions (prompts.yaml), prompt erasure, the
            cautious system message, and which strategy an answer shows
  families  the built-in families' items (arithmetic, lookup, recall, compare) and their checkers
  data      teacher answers per family instruction, validated, rendered as erased / kept / single-strategy
            training chats; the scripted teacher's answers
"""
