"""The judge: what a converted network must compute, and whether it does.

It imports nothing it judges (no converter, rewrite rule or converted layer), so that a fault in
the conversion cannot bend the standard it is held to:
- `reference`: the reference of docs/design.md P0 as code, and how a 2D and a 3D network are
  run for a comparison;
- `tolerance`: how close is equal;
- `probe`: one converted module against its recorded 2D call (P0 on distinct slices, P2 on
  equal slices), with its own code watched;
- `network`: the end-to-end check of a whole converted network, and where it first departs.
"""
