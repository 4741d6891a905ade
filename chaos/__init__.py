"""The guarantees (docs/design.md, "Guarantees"), proven against real processes: ``make chaos``."""
