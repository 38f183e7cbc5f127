"""fairdistill: distil a teacher into a small student without amplifying its biases, and measure it."""

__version__ = "0.1.0"
