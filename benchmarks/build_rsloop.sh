#!/usr/bin/env bash
# Build rsloop from its PyPI sdist into a venv (its wheels need glibc > 2.36).
#   benchmarks/build_rsloop.sh .venv/py3.11 [VERSION]
# The sdist pins a nightly toolchain and uses the unstable allocator_api without declaring
# it in the crate root, so: any installed nightly, plus the feature gate from RUSTFLAGS.
# Takes a few minutes of compiling on 2 cores; do not benchmark meanwhile.
set -euo pipefail
venv=${1:?usage: build_rsloop.sh VENV [VERSION]}
version=${2:-0.1.66}
py="$venv/bin/python"
nightly=$(rustup toolchain list 2>/dev/null | awk '/^nightly/ {print $1; exit}')
if [ -z "$nightly" ]; then
    echo "rsloop needs a nightly Rust toolchain and none is installed (rustup toolchain list)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Stable is enough to read the sdist's metadata; the pinned nightly is not needed for that.
RUSTUP_TOOLCHAIN=stable "$py" -m pip download -q --no-deps --no-binary :all: "rsloop==$version" -d "$work"
tar xzf "$work"/rsloop-"$version".tar.gz -C "$work"
RUSTUP_TOOLCHAIN=$nightly RUSTFLAGS="-Zcrate-attr=feature(allocator_api)" CARGO_TARGET_DIR="$work/target" \
    "$py" -m pip wheel -q --no-deps -w "$work/wheel" "$work/rsloop-$version"
"$py" -m pip install -q "$work"/wheel/rsloop-*.whl
"$py" -c 'import rsloop; print("rsloop", rsloop.__version__, "installed")'
