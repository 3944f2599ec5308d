#!/bin/sh
# Install ppw from this checkout into a virtualenv (default /opt/ppw), the same way the container
# image does: build the wheel, install it with its dependencies, check that `ppw` runs.
#
#   deploy/install.sh [PREFIX]
#
# Re-running it upgrades in place (an existing virtualenv is reused). Environment:
#   PYTHON             interpreter that creates the virtualenv (default: python3, >= 3.11)
#   PPW_WHEEL_ARGS     extra `pip wheel` arguments (e.g. --no-build-isolation offline)
#   PPW_INSTALL_ARGS   extra `pip install` arguments (e.g. --no-index --find-links DIR offline)
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:-/opt/ppw}
python=${PYTHON:-python3}

if [ ! -x "$prefix/bin/python" ]; then
    "$python" -m venv "$prefix"
fi

wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT INT TERM

# shellcheck disable=SC2086  # the *_ARGS variables are lists of words on purpose
"$prefix/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" ${PPW_WHEEL_ARGS:-} "$src"
# shellcheck disable=SC2086
"$prefix/bin/python" -m pip install --quiet --upgrade ${PPW_INSTALL_ARGS:-} "$wheels"/ppw-*.whl

"$prefix/bin/ppw" --help >/dev/null
echo "ppw installed in $prefix ($("$prefix/bin/python" -c 'import worker; print(worker.__version__)'))"
