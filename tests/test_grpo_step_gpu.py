"""The GPU benchmark (`benchmarks/grpo_step_gpu.py`) on the CPU: its `--cpu-smoke` runs every mode's step through
the real processor, trainer code and TRL's fused head at tiny size, so a device run cannot die of a Python error,
and the attention-pair count its MFU uses matches the packed mask that `prefix_sharing` really builds."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hs_rl.data.prompt_media import PromptMedia
from hs_rl.grpo.prefix_sharing import pack_groups, packed_mask_function

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "grpo_step_gpu.py"


def _script():
    spec = importlib.util.spec_from_file_location("grpo_step_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_attention_pairs_match_the_packed_mask():
    bench = _script()
    P, C, G = 7, 4, 3
    row = PromptMedia(input_ids=torch.arange(P))
    ids = torch.cat([torch.arange(P).repeat(G, 1), torch.arange(G * C).view(G, C) + 100], 1)
    mask = torch.ones_like(ids)
    plan = pack_groups(ids, mask, [row] * G, P, torch.zeros(3, G, P + C, dtype=torch.long))
    assert plan["group"].numel() == bench.lm_tokens("ours", P, C, G)
    q = torch.arange(plan["group"].numel())
    causal = q[None, :] <= q[:, None]
    allowed = packed_mask_function(plan["group"], plan["segment"])(0, 0, q[:, None], q[None, :]) & causal
    assert int(allowed.sum()) == bench.attention_pairs("ours", P, C, G)
    assert bench.attention_pairs("trl", P, C, G) == G * (P + C) * (P + C + 1) // 2


@pytest.mark.slow
def test_cpu_smoke_runs_every_mode_and_they_agree(tmp_path):
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version("5.23"):
        pytest.skip("the benchmark's `trl` mode (TRL's fused head on the thinker with its media) needs transformers "
                    "5.23's layout: 5.20's thinker has no head-less backbone that takes media (docs/vllm.md)")
    out = tmp_path / "smoke.json"
    assert _script().main(["--cpu-smoke", "--rounds", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    diffs = {k: v for k, v in result["agreement"].items() if k.startswith("max_abs_diff")}
    assert set(diffs) == {"max_abs_diff_ours_vs_trl", "max_abs_diff_ours_noshare_vs_trl"}
    assert all(v < 1e-4 for v in diffs.values()), diffs  # fp32: packed, plain and TRL's forward score alike
    assert result["video_tokens"] > 0 and result["audio_tokens"] > 0 and result["failed"] == []
