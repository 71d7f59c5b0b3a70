"""What the conformance checks (``conformance/``) are made of: their assertions and judgements, how checks depend
on each other, and the comparisons they make. ``conformance`` imports ``pytest_wiw.checks`` and nothing else of
pytest_wiw.
"""
