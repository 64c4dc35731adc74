"""Data: preprocessing into the canonical cube, slabs and their Dataset, the cube cache, the way
back to the native grid, and the scan splits."""
