"""Reference episodes for ``closer to ground truth``: their layout on disk, and the import of WIW's Habitat
collections into it (``pytest-wiw import-habitat``).
"""
