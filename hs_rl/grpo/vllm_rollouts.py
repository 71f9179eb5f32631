"""GRPO rollouts through a colocated vLLM engine (`use_vllm: true`, `vllm_mode: colocate`): the trainer's side.

Each process has its own engine (hs_rl.omni.vllm_engine.VLLMEngine) and samples its own rows' completions there.
What this module adds around the engine:

- `engine_settings`: the engine's options from TRL's (`vllm_max_model_length`, `vllm_gpu_memory_utilization`,
  `vllm_enable_sleep_mode`) and the model; the longest prompt the engine takes with room for a completion.
- `policy_weights`: the policy's tensors under the thinker's transformers names, whole modules at a time, for
  `VLLMEngine.push_named`: LoRA merged into the base weights for the push (and unmerged after), ZeRO-3 gathered
  one top-level module at a time with TRL's `gather_params` (every process runs the same gathers in the same
  order: each pushes to its own engine), a tied LM head included. After the first push only the modules with a
  trained parameter are sent (frozen towers stay as they were loaded or first pushed).
- `together`: an engine call whose failure on any process stops every process with the engine's error (a flag is
  gathered), so no process waits forever in the next collective for one whose engine died.
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from hs_rl.errors import UserError
from hs_rl.omni.inputs import thinker_of
from hs_rl.omni.vllm_engine import language_model_prefix

logger = logging.getLogger(__name__)



def mode_problem(config) -> str | None:
    """Why this `vllm_mode` is refused (None: colocate, the one hs-rl runs)."""
    if config.vllm_mode == "colocate":
        return None
    return (f"vllm_mode: {config.vllm_mode!r} is not supported: hs-rl runs vLLM colocated (each process its own "
            "engine, fed each row's video and audio); set vllm_mode: colocate")


def config_problems(config, model_dir: str | Path | None, max_prompt_length: int | None) -> list[str]:
    """What stops `use_vllm` before any weights load (empty: nothing); vLLM imported to check it is there."""
    if not config.use_vllm:
        return []
    from hs_rl.omni.vllm_engine import engine_model_problem, require_vllm

    problems = []
    if (refused := mode_problem(config)) is not None:
        problems.append(refused)
    if getattr(config, "use_transformers_continuous_batching", False):
        problems.append("use_vllm with use_transformers_continuous_batching: pick one generation engine")
    try:
        require_vllm()
    except UserError as err:
        problems.append(str(err))
    served = model_dir is not None and (problem := engine_model_problem(model_dir)) is None
    if model_dir is not None and not served:
        problems.append(f"use_vllm: {problem}")
    if served:
        limit = prompt_limit(config, model_dir)
        if limit < 1:
            problems.append(f"vllm_max_model_length={max_model_len(config, model_dir)} leaves no room for a prompt "
                            f"beside max_completion_length={config.max_completion_length}")
        elif max_prompt_length is not None and max_prompt_length > limit:
            problems.append(f"max_prompt_length={max_prompt_length} plus max_completion_length="
                            f"{config.max_completion_length} is over the vLLM engine's vllm_max_model_length="
                            f"{max_model_len(config, model_dir)}: raise vllm_max_model_length or lower "
                            "max_prompt_length")
    return problems


def max_model_len(config, model_dir: str | Path) -> int:
    """The engine's context: `vllm_max_model_length`, else the model's own (as vLLM and TRL default it)."""
    if config.vllm_max_model_length:
        return int(config.vllm_max_model_length)
    text = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    text = text.get("thinker_config", text).get("text_config", {})
    return int(text.get("max_position_embeddings") or 32768)


def prompt_limit(config, model_dir: str | Path) -> int:
    """The longest prompt the engine takes: its context minus `max_completion_length`."""
    return max_model_len(config, model_dir) - int(config.max_completion_length)


def engine_model_dir(thinker) -> Path:
    """The folder the policy was loaded from (the engine loads its architecture and processor there, then gets the
    policy's current weights pushed)."""
    path = Path(getattr(thinker, "name_or_path", "") or "")
    if not (path / "config.json").is_file():
        raise UserError(f"use_vllm: the policy was not loaded from a model folder ({path!s:.200}); the vLLM engine "
                        "starts from the model folder's config and processor")
    return path


def build_engine(trainer):
    """This process's engine for the trainer's policy."""
    from hs_rl.omni.vllm_engine import VLLMEngine

    args = trainer.args
    thinker = thinker_of(trainer.accelerator.unwrap_model(trainer.model))
    model_dir = engine_model_dir(thinker)
    dtype = str(next(thinker.parameters()).dtype).removeprefix("torch.")
    seqs = max(args.per_device_train_batch_size * args.steps_per_generation, args.per_device_eval_batch_size or 1)
    engine = VLLMEngine(model_dir, dtype=dtype, max_model_len=max_model_len(args, model_dir),
                        gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                        seed=args.seed + trainer.accelerator.process_index,
                        enable_sleep_mode=args.vllm_enable_sleep_mode, max_num_seqs=max(seqs, 1))
    logger.info("use_vllm: engine on process %d from %s (%s, max_model_len %d)", trainer.accelerator.process_index,
                model_dir, dtype, engine.max_model_len)
    return engine


def trained_parts(thinker, names: dict[str, str]) -> set[str]:
    """What a push after an optimizer step sends: the thinker's top-level parts (`names`: its `thinker_parts`)
    holding a parameter that trains (LoRA: the parts it adapts), and the head whenever the language model is in
    them (vLLM's head keeps its own packed copy, tied or not)."""
    parts = {part for part in names for name, p in thinker.named_parameters()
             if p.requires_grad and name.startswith(part)}
    return parts | {"lm_head."} if language_model_prefix(names) in parts else parts


@contextlib.contextmanager
def _merged(model) -> Iterator[None]:
    """A PEFT model's adapters merged into its base weights for the duration (the engine has no LoRA)."""
    if not hasattr(model, "merge_adapter"):
        yield
        return
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()


def policy_weights(trainer, parts: set[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """(thinker transformers name, tensor) of the policy's parts (`parts`; None: all), one top-level module at a
    time; every process must iterate it to the end (ZeRO-3's gathers are collectives)."""
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    thinker = thinker_of(unwrapped)
    peft = hasattr(unwrapped, "merge_adapter")
    gather = trainer._dist.gather_params
    # ZeRO-3 + LoRA: merging needs the whole model gathered at once (as TRL does it)
    outer = gather(list(unwrapped.parameters())) if peft else contextlib.nullcontext()
    with outer, _merged(unwrapped):
        for module_name, module in _push_units(thinker):
            params = [(name, p) for name, p in module.named_parameters(prefix=module_name)
                      if parts is None or name.startswith(tuple(parts))]
            if not params:
                continue
            with (gather([p for _, p in params]) if not peft else contextlib.nullcontext()):
                for name, param in params:
                    name = name.replace(".base_layer", "").replace("modules_to_save.default.", "")
                    if "lora_" in name or "original_module" in name:
                        continue
                    # a copy: vLLM may buffer a tensor until its layer is complete, after the gather has ended
                    yield name, param.data.detach().clone()
        head, embed = thinker.get_output_embeddings(), thinker.get_input_embeddings()
        # tied: named_parameters lists the shared tensor once, under the embedding's name
        if (parts is None or "lm_head." in parts) and head is not None and head.weight is embed.weight:
            with gather([head.weight]):
                yield "lm_head.weight", head.weight.data.detach().clone()


def _push_units(thinker) -> list[tuple[str, torch.nn.Module]]:
    """The modules gathered and pushed one at a time, each a whole vLLM layer or more: each decoder layer, vision
    block and audio layer, and the small leftovers of each part (embeddings, norms, merger, head)."""
    units: list[tuple[str, torch.nn.Module]] = []
    covered: set[str] = set()
    for name, module in thinker.named_modules():
        parent, _, index = name.rpartition(".")
        if index.isdigit() and parent.endswith(("layers", "blocks")) and not any(
                name.startswith(c + ".") for c in covered):
            units.append((name, module))
            covered.add(name)
    leftovers = [(name, p) for name, p in thinker.named_parameters()
                 if not any(name.startswith(c + ".") for c in covered)]
    if leftovers:
        units.append(("", _Leftovers(leftovers)))
    return units


class _Leftovers(torch.nn.Module):
    """The parameters outside every repeated layer, under their full names (one push unit)."""

    def __init__(self, named: list[tuple[str, torch.nn.Parameter]]):
        super().__init__()
        self._named = named

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return iter(self._named)


def together(trainer, what: str, call: Callable[[], Any]) -> Any:
    """Run an engine call; if it raised on any process, every process raises (with this process's error, or
    naming the failed process), so none is left waiting in a collective."""
    error: BaseException | None = None
    result = None
    try:
        result = call()
    except Exception as err:  # the engine's own error is the message
        error = err
        logger.error("vLLM engine failed during %s: %s", what, err)
    if not trainer._same_on_every_rank(error is None):
        if error is not None:
            raise RuntimeError(f"vLLM engine failed during {what}: {type(error).__name__}: {error}") from error
        raise RuntimeError(f"vLLM engine failed during {what} on another process (its log has the error); this "
                           "process stops with it")
    return result


def logprob_drift(output: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, max) |engine's sampled log-prob - the trainer's old log-prob| over this process's completion tokens."""
    old, sampled = output.get("old_per_token_logps"), output.get("sampling_per_token_logps")
    if old is None or sampled is None:
        return None
    mask = output["completion_mask"].bool()
    delta = (old - sampled).abs()[mask & ~torch.isnan(sampled)]
    if delta.numel() == 0:
        zero = torch.zeros((), device=old.device)
        return zero, zero
    return delta.mean(), delta.max()
