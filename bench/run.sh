#!/usr/bin/env bash
# Runs every benchmark; each prints its ratios against a baseline measured in the same run.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
rc=0
/usr/bin/python3 bench/eif.py "$BUILD" || rc=1
/usr/bin/python3 bench/build.py "$BUILD" || rc=1
/usr/bin/python3 bench/relay.py "$BUILD" || rc=1
/usr/bin/python3 bench/egress.py "$BUILD" || rc=1
/usr/bin/python3 bench/attest.py "$BUILD" || rc=1
/usr/bin/python3 bench/kms.py "$BUILD" || rc=1
/usr/bin/python3 bench/vm.py "$BUILD" || rc=1
exit $rc
