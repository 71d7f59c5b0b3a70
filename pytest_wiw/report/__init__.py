"""The conformance report: one JSON per wm_type, the Markdown summary (``writer``), and contact sheets."""
