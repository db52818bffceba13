"""Studies: suites, search spaces, the plan and everything that runs on Ray."""

SUITE_FLAGS = "suite_flags"  # the argparse namespace entry listing the flags of `harness run`'s "suite overrides" group
