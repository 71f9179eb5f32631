"""`use_vllm` settings hs-rl refuses before any weights load, one line each (hs_rl.grpo.vllm_rollouts)."""
from __future__ import annotations

from types import SimpleNamespace


def test_only_colocated_engines_are_accepted():
    from hs_rl.grpo.vllm_rollouts import config_problems, mode_problem

    assert mode_problem(SimpleNamespace(vllm_mode="colocate")) is None
    server = SimpleNamespace(use_vllm=True, vllm_mode="server", use_transformers_continuous_batching=False)
    refusal = mode_problem(server)
    assert refusal.startswith("vllm_mode: 'server' is not supported") and "set vllm_mode: colocate" in refusal
    assert refusal in config_problems(server, None, None)  # the pre-flight list names it too
    assert config_problems(SimpleNamespace(use_vllm=False, vllm_mode="server"), None, None) == []
