"""What running a wrapper takes, in whichever process runs it (the worker, ``pytest-wiw make-tiny``, the
benchmarks): importing its class (``wrapper_class``), the settings it runs with (``settings``, ``presets``), and the
embedded default's tiny checkpoints (``tiny``).
"""
