#!/usr/bin/env bash
# `make deploy-check`: the deployment files in deploy/ checked mechanically
# (scripts/check-deploy.py), then its self-test (each of a set of breaks must
# be reported). PyYAML comes from PyPI into target/py/deploy.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/py-venv.sh deploy)
"$venv/bin/python" scripts/check-deploy.py "$@"
"$venv/bin/python" scripts/check-deploy.py --self-test
