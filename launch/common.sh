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
