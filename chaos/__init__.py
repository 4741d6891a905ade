"""The guarantees of SPEC ("Guarantees"), proven against real processes: ``make chaos``."""
