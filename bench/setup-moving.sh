#!/usr/bin/env bash
# Prepares bench/moving.py: a venv with the full mlflow==3.17.2 (servers and
# client) and mlflow-export-import 1.2.0, and Tandem's release binary.
# Idempotent; not run in CI.
#
#   bash bench/setup-moving.sh
#
# Environment:
#   EXIM_VENV         [/root/.cache/mlflow-exim-venv]
#   CARGO_TARGET_DIR  [/root/.cache/tandem-target-bench]
set -euo pipefail

EXIM_VENV=${EXIM_VENV:-/root/.cache/mlflow-exim-venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/tandem-target-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

if [ -x "$EXIM_VENV/bin/export-all" ] && [ -x "$EXIM_VENV/bin/mlflow" ]; then
    echo "venv ok: $EXIM_VENV"
else
    python3 -m venv "$EXIM_VENV"
    "$EXIM_VENV/bin/pip" install -q --upgrade pip
    "$EXIM_VENV/bin/pip" install -q "mlflow==3.17.2" "mlflow-export-import==1.2.0" requests tabulate  # tabulate: used, not declared
fi
(cd "$ROOT" && cargo build --release -p tandem)
echo "ready: $EXIM_VENV/bin/python bench/moving.py"
