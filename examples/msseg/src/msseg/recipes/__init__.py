"""Recipes: how a scan becomes the working volume the network sees, and the network's outputs
a volume again. One file per recipe (`paper`, `spacing`), what every recipe is (`recipe`) and
the FLAIR scaling they share (`intensity`); `msseg.config.RECIPES` lists them by name."""
