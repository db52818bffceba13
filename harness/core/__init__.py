"""Ground floor: errors, registries, strict JSON, atomic files and the run configuration."""
