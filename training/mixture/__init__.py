"""The mixture loader: exact ratios, a pure function of (seed, plan, manifests, step)."""
