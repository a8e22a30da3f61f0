"""Implementation modules, one per algorithm; the public surface is :mod:`alignment`."""
