#!/usr/bin/env bash
# Shared by launch/stage*.sh and launch/pipeline.sh: build and run one `accelerate launch` command.
#
# Environment (all optional):
#   ACCELERATE_CONFIG  name in launch/accelerate/ (ddp, zero2, zero3, zero3_offload, zero3_multinode, …) or a
#                      path to a YAML; default zero3_offload (the recipe), zero3_multinode when NNODES > 1
#   GPUS_PER_NODE      processes per node (default 8)
#   NUM_PROCESSES      total processes (default NNODES × GPUS_PER_NODE)
#   NNODES             machines (default 1)
#   NODE_RANK          this machine's rank, 0 … NNODES-1 (default 0)
#   MASTER_ADDR        address of node 0 (default 127.0.0.1)
#   MASTER_PORT        port on node 0 (default 29500)
#   HS_RL_DRY_RUN=1    print the command and exit without running it
#   HS_RL_STAGES       folder of the stage YAMLs (default stages; stages/tiny for the tiny CPU twins)
#   HS_RL_CONSOLE      live | full | off: a stage writes OUTPUT_DIR/train.log and shows, on a terminal, the pipeline's
#                      live line (live, the default there) or everything (full, the default elsewhere) (hs_rl/stage_log.py)
#
# Two languages, one file: launch/stage*.sh are valid bash AND valid Python, because the project is used as
# `accelerate launch launch/stage1.sh …` and accelerate runs a script with python (unless --no_python), while
# `bash launch/stage1.sh …` must keep working. Line 2, `"true" '''\'`, is for bash the no-op `true \`; for
# Python it opens a string (`\'` is an escaped quote) that swallows the bash part. Bash execs accelerate (or
# exits) before it reaches the Python part, which it holds in a heredoc so that `bash -n` never parses it.
# Python runs `hs_rl.train.stage_main`, which reads ${HS_RL_STAGES:-stages}/<stage>.yaml. A launcher that execs
# the file itself (`accelerate launch --no_python`, torchrun --no-python) starts bash inside a launched process:
# hs_rl_stage notices (RANK/LOCAL_RANK/ACCELERATE_* already set) and runs the Python part instead of launching
# again.
set -euo pipefail

HS_RL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

hs_rl_accelerate_words() {  # fills the array HS_RL_ACCELERATE with `accelerate launch --config_file … --main_process_port …`
    local nnodes="${NNODES:-1}"
    local gpus="${GPUS_PER_NODE:-8}"
    local nproc="${NUM_PROCESSES:-$((nnodes * gpus))}"
    local default_config=zero3_offload
    if [ "$nnodes" -gt 1 ]; then default_config=zero3_multinode; fi
    local config="${ACCELERATE_CONFIG:-$default_config}"
    cd "$HS_RL_ROOT"
    if [ ! -f "$config" ]; then config="launch/accelerate/${config%.yaml}.yaml"; fi
    if [ ! -f "$config" ]; then
        echo "hs-rl launch: no accelerate config $config (choose from: $(cd launch/accelerate && ls *.yaml | tr '\n' ' '))" >&2
        exit 2
    fi
    HS_RL_ACCELERATE=(accelerate launch --config_file "$config"
        --num_processes "$nproc"
        --num_machines "$nnodes"
        --machine_rank "${NODE_RANK:-0}"
        --main_process_ip "${MASTER_ADDR:-127.0.0.1}"
        --main_process_port "${MASTER_PORT:-29500}")
}

hs_rl_run() {  # print the command (shell-quoted), then run it unless HS_RL_DRY_RUN=1
    printf '+'; printf ' %q' "$@"; printf '\n'
    if [ "${HS_RL_DRY_RUN:-0}" = "1" ]; then return 0; fi
    exec "$@"
}

hs_rl_launch() {  # hs_rl_launch MODULE ARGS…: `accelerate launch … -m MODULE ARGS…` from the repository root
    local module="$1"; shift
    hs_rl_accelerate_words
    hs_rl_run "${HS_RL_ACCELERATE[@]}" -m "$module" "$@"
}

hs_rl_stage() {  # hs_rl_stage STAGE_FILE ARGS…: launch hs_rl.train on ${HS_RL_STAGES:-stages}/STAGE_FILE
    local file="$1"; shift
    local stages="${HS_RL_STAGES:-stages}"
    if [ -n "${LOCAL_RANK:-}${ACCELERATE_DYNAMO_BACKEND:-}" ]; then  # already one process of a launch (see above)
        exec "${PYTHON:-python}" "$0" "$@"
    fi
    # a relative HS_RL_STAGES is the repository's folder, or else one relative to where the command was typed
    if [ "${stages#/}" = "$stages" ] && [ ! -d "$HS_RL_ROOT/$stages" ] && [ -d "$stages" ]; then
        stages="$(cd "$stages" && pwd)"
    fi
    hs_rl_launch hs_rl.train "${stages%/}/$file" "$@"
}
