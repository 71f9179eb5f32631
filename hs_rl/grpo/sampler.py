"""The training sampler's shuffle as a function of (seed, epoch), so a run resumed mid-run draws the same order."""
from __future__ import annotations


def epoch_seeded(sampler):
    """Give TRL's RepeatSampler a `set_epoch` that seeds its shuffle with seed + epoch.

    Its generator is seeded once and advanced by every epoch's permutation, so a run resumed in epoch 2 would
    draw epoch 1's order again (a fresh generator). Seeding per epoch makes each epoch's order a function of
    (seed, epoch) alone; accelerate calls `set_epoch` on the sampler at the start of every epoch.
    """
    generator = getattr(sampler, "generator", None)
    seed = getattr(sampler, "seed", None)
    if generator is None or seed is None or hasattr(sampler, "set_epoch"):
        return sampler

    def set_epoch(epoch: int) -> None:
        generator.manual_seed(int(seed) + int(epoch))

    sampler.set_epoch = set_epoch
    return sampler
