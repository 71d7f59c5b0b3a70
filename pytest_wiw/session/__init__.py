"""The pytest process's side of the world models under test: the session (``wiw_session``), one subject per
wm_type and the generations its checks share (``subject``), the worker pool (``pool``), the clients that talk to a
worker (``client`` for ours, ``legacy`` for an unmodified WIW script), and the baseline cache.
"""
