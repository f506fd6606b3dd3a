"""intentstream's engine: pure domain logic, no network I/O in its core."""

__version__ = "0.1.0"
