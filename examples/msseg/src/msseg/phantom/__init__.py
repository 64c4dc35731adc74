"""The synthetic MSSEG look-alike: voxel grids, an analytic FLAIR head, MS-like lesions."""
