#!/usr/bin/env bash
# The project's one test command: installs what the tests need when it is
# missing (Mosquitto from Debian; a Rust toolchain must already be there),
# then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need_apt+=(mosquitto)
# The dashboard's browser test drives Debian's headless chromium from node.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian installs the broker in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin"

# The archive interop test reads the Parquet archive with third-party
# readers from PyPI (pyarrow, DuckDB), kept in a venv at .venv.
if ! .venv/bin/python -c 'import pyarrow, duckdb' >/dev/null 2>&1; then
  echo "installing pyarrow and duckdb into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q pyarrow duckdb
fi
# playwright-core (npm) drives that chromium; it downloads no browser.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "installing playwright-core into tests/browser" >&2
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

export ECG_PYTHON="${ECG_PYTHON:-$PWD/.venv/bin/python}"

cargo test --workspace --no-fail-fast "$@"
# Benchmarks run once each in test mode, so that they keep compiling and working.
cargo test --workspace --benches "$@"
