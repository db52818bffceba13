"""Studies: suites, search spaces, the plan and everything that runs on Ray."""
