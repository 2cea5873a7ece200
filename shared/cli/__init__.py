"""The `cloud` command-line interface."""
