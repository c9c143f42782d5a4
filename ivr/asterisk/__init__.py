"""Running a private Asterisk instance for `make run`, tests and QA."""
