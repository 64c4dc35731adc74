"""The rewrite rules: 2D functional code inside a module's forward, given a meaning on volumes.

- `contract`: what every rule is (`rule(site, fn, args, kwargs)`, `NoPlanarMeaning`);
- `ops`: the vocabulary of calls, by what they do to a tensor's dims;
- `body`, `head`: the rules of the two kinds of rewrite (per slice; the head pool);
- `table`: which call gets which rule, in each kind: the one table;
- `forward`: a module's own forward traced by torch.fx, its calls routed through the table.
"""
