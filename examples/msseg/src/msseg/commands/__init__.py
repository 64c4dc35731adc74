"""The command line: one thin module per command; they parse flags and call library code."""
