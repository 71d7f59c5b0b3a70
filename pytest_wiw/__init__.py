"""pytest-wiw: conformance checks for World-in-World video world models, as a pytest plugin."""

__version__ = "0.1.0"
