#!/usr/bin/env bash
# Wheels the GPU machine lacks, for Python 3.12 x86-64, into .whl/ (ignored by git; carried by the device tool).
cd "$(dirname "$0")/.."
P="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $P -d .whl \
  diffusers==0.42.1 open_clip_torch==3.3.0 xformers==0.0.35 importlib_metadata
