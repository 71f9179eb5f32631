"""A test reward that varies on a random model (distinct-character ratio), so GRPO groups have a non-zero std."""


def char_diversity(completions, **kwargs):
    texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
    return [len(set(t)) / max(len(t), 1) for t in texts]
