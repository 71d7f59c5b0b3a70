"""Both ends of the pipe between the pytest process and a worker: the frame format (``frames``) and the typed
messages sent in it (``messages``).
"""
