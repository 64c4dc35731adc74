"""The report people open in a browser: one self-contained HTML page per run."""
