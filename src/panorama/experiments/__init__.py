"""A/B test analysis and the hypothesis backlog (docs/experiments.md)."""
