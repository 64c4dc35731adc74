"""planar3d: exact 2D-to-3D transfer learning for CNNs."""
