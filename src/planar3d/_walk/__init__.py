"""The conversion walk: module by module, how a 2D network becomes 3D.

- `walk`: visits the network bottom-up, finds each module's region and hands it on;
- `leaf`: a module whose exact type has a converter;
- `body`, `head`: a module with its own forward, in the per-slice body or in a classifier's
  head: kept if a probe shows that it reproduces the 2D network, else mended, rewritten or
  folded;
- `fold`: a module run slice by slice, and the check that this reproduces it;
- `repair`: what the end-to-end check found, mended or refused.

Every decision goes into the plan (`_plan`); `session` holds what all of them read.
"""
