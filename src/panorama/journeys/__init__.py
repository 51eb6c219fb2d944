"""Customer journeys: stages, flows, funnels, paths, stalls, process discovery (docs/journeys.md)."""
