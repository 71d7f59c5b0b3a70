"""World-model wrappers: one module per WM family. The roster is registered in ``wrappers.catalog``."""
