"""The ``driftloop`` command line: one module per noun, thin (parse, call, print)."""
