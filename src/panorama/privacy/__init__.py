"""Privacy: data subject rights, tombstones, consent and suppression lists (docs/privacy.md).

- `guard`: hashed tombstones of deleted people's identifiers; every ingestion path asks it
  before writing, so a deletion is not undone by the next import.
- `subject`: find everything held about one person; export it (JSON) or delete it.
- `consent`: consent per person and purpose from events, traits and source columns, with the
  time and source of each change; suppression lists; the check destinations run.
- `commands` (`panorama privacy ...`, `panorama consent ...`) and `api` (REST routes) call
  the same functions.
"""
