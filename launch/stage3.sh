#!/usr/bin/env bash
"true" '''\'
# Stage 3 (stage3_video_audio): GRPO on video with its own audio track.
# This file is a bash script AND a Python script (see launch/common.sh, "Two languages, one file"):
#   accelerate launch launch/stage3.sh [--option value …]       your accelerate config; every process runs the
#                                                                 Python part below (accelerate runs scripts with python)
#   accelerate launch --config_file launch/accelerate/zero3_offload.yaml launch/stage3.sh …   the recipe's ZeRO-3
#   bash launch/stage3.sh [--option value …]                     builds the `accelerate launch` command itself from
#                                                                 ACCELERATE_CONFIG, NUM_PROCESSES, NNODES, … (common.sh)
# Options go to `hs-rl train` (e.g. --output_dir X --max_steps 5). The stage YAML is
# ${HS_RL_STAGES:-stages}/stage3_video_audio.yaml (HS_RL_STAGES=stages/tiny: the tiny CPU twin).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hs_rl_stage stage3_video_audio.yaml "$@"
exit
: <<'END_OF_PYTHON'
'''
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # this checkout's hs_rl
from hs_rl.train import stage_main  # noqa: E402

sys.exit(stage_main("stage3_video_audio.yaml", sys.argv[1:]))
END_OF_PYTHON
