"""Generated stubs of ``albatross/v1/albatross.proto``; regenerate with ``python -m protos.generate``."""
