#!/usr/bin/env bash
# Set-up on a fresh machine (CPU or GPU): torch from the local wheel mirror, then hs-rl with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install torch==2.14.1 torchvision==0.29.1
python -m pip install -e ".[dev]"
