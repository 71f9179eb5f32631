#!/usr/bin/env bash
# Stage 3 (stage3_video_audio): GRPO on the Qwen2.5-Omni thinker, one node of 8 GPUs by default.
#   launch/stage3.sh [--option value …]        (options are passed to hs-rl train, e.g. --output_dir X)
#   ACCELERATE_CONFIG=zero3 launch/stage3.sh    (see launch/common.sh and docs/distributed.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hs_rl_launch hs_rl.train stages/stage3_video_audio.yaml "$@"
