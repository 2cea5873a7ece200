# Sourced by .ci/run before `make test`: install and start the system services the tests need.
true
