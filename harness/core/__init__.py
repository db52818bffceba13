"""Ground floor: errors, registries, strict JSON, atomic files, YAML reading and the run configuration."""
