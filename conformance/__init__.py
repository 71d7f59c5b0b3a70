"""The conformance checks, as pytest test modules; the plugin collects them when --wm is given."""
