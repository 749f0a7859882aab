"""rayfleet's version (its own module, so lower layers can name it without importing the SDK)."""

__version__ = "0.1.0"
