# Sourced by .ci/run before `make test`: install and start the system services the tests need.
# `make test` runs the same script (make services); running it here first shows its output on its own.
scripts/services/all.sh
