"""Files: finding scans, loading and saving NIfTI, the canonical frame, the one atomic writer."""
