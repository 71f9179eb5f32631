#!/usr/bin/env bash
# The three chained stages of stages/pipeline.yaml. The pipeline itself is one plain process: it starts each
# stage as its own `<launcher> -m hs_rl.train STAGE.yaml` job, with the launcher built here from the same
# environment as launch/stage*.sh (ACCELERATE_CONFIG, NUM_PROCESSES, NNODES, NODE_RANK, MASTER_ADDR,
# MASTER_PORT). Do not start the pipeline under accelerate: every rank would start its own stages.
#   launch/pipeline.sh [--option value …]       (options are passed to hs-rl pipeline, e.g. --from_stage 2)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
hs_rl_accelerate_words
launcher="$(printf '%q ' "${HS_RL_ACCELERATE[@]}")"
hs_rl_run "${PYTHON:-python}" -m hs_rl.cli pipeline stages/pipeline.yaml --launcher "${launcher% }" "$@"
