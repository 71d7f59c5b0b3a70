"""Checkpoints on disk, read in any process: their files and format (``files``), training epochs, weight variants,
cards, pickles converted to safetensors, fingerprints of their tensors, what an FT folder changes against its base,
and the digest cache. Nothing here imports a model library or starts a process.
"""
