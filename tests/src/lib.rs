//! Shared harness for the scenario tests in `tests/tests/`.
