#!/usr/bin/env bash
# Builds the python tests/ported/test_lerobot_dataset_writer.py runs LeRobot main's writer in
# (evaluation tooling: robovid does not depend on LeRobot). ~3 min and ~5 GB; then
#   ROBOVID_LEROBOT_MAIN_PYTHON=DIR/bin/python .venv/bin/python -m pytest -q tests/ported/
#
#   tests/lerobot-main-venv.sh DIR LEROBOT_GIT [COMMIT]   # LEROBOT_GIT: a clone of huggingface/lerobot
#
# LeRobot main (7427f31) needs Python >= 3.12 (PEP 695 syntax): PYTHON3 must be one. It goes in with
# --no-deps beside torch 2.13 (its pin says <2.12), and with robovid's PyAV 18 instead of its av<16:
# one process cannot hold both, and LeRobot's pyav_utils only needs av<16 for the option checks of its
# own encoder configs, which robovid's replace (tests/ported/lerobot_main_writer.py says how). PyPI's
# torch for 3.12 is the CUDA build (~4.5 GB with its nvidia-* wheels); it runs on CPU as it is.
set -euo pipefail
dir=${1:?usage: lerobot-main-venv.sh DIR LEROBOT_GIT [COMMIT]}
src_git=${2:?usage: lerobot-main-venv.sh DIR LEROBOT_GIT [COMMIT]}
commit=${3:-7427f31}
"${PYTHON3:-python3.12}" -m venv "$dir"
py=$dir/bin/python
"$py" -m pip install -q --upgrade pip
"$py" -m pip install -q "torch==2.13.0" "torchvision==0.28.0" "torchcodec==0.13.*"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git -C "$src_git" archive "$commit" | tar -x -C "$src"
"$py" -m pip install -q --no-deps "$src"
# lerobot.datasets' imports at LeRobot's own pins; then robovid's dependencies (its source comes by PYTHONPATH).
"$py" -m pip install -q "numpy>=2.0.0,<2.3.0" "Pillow>=10.0.0,<13.0.0" "einops>=0.8.0,<0.9.0" \
  "draccus>=0.11.6,<0.12.0" "huggingface-hub>=1.6.0,<2.0.0" "requests>=2.32.0,<3.0.0" \
  "gymnasium>=1.1.1,<2.0.0" "safetensors>=0.4.3,<1.0.0" "packaging>=24.2,<26.0" "termcolor>=2.4.0,<4.0.0" \
  "tqdm>=4.66.0,<5.0.0" "opencv-python-headless>=4.9.0,<4.14.0" "datasets>=4.8.0,<5.0.0" "pandas>=2.0.0,<3.0.0" \
  "pyarrow>=21.0.0,<30.0.0" "jsonlines>=4.0.0,<5.0.0" pytest \
  "av>=18.1,<19" "imagecodecs>=2025.3.30" "fsspec>=2024.1" "structlog>=24.1" "watchdog>=4" "pydantic-settings>=2.2"
echo "use: ROBOVID_LEROBOT_MAIN_PYTHON=$py"
