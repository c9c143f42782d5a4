#!/usr/bin/env bash
# `make run`: start the local Asterisk, run the service in the foreground, stop Asterisk
# when the service exits (Ctrl-C).
set -uo pipefail
bin="$(dirname "$0")/../.venv/bin"
"$bin/ivr" asterisk start || exit 1
trap '"$bin/ivr" asterisk stop' EXIT
"$bin/ivr" serve
