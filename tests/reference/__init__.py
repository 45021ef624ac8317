"""Darknet's C, transcribed once for the tests that compare against it (one module per C file
or family). Plain NumPy loops over C's index order, float32 where C stores floats."""
