"""Identity resolution: one person, one profile (docs/identity.md).

normalize  identifier and attribute normalisation (emails, phones, names, dates, postcodes)
rules      per-type linking rules from the project config, with defaults
graph      the batch identity graph: shared-identifier detection, guarded merges, stable ids
matching   probabilistic matching of person-like records (Splink)
realtime   the real-time hook (the same rules, applied to the affected profiles)
journal    merge history, splits and never-merge pairs
export     SQL for `panorama export identities|identifiers|profiles`
evaluate   pairwise precision / recall / F1 against a truth file
"""
