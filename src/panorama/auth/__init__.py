"""Users, roles, sessions, API tokens, PII masking and the audit log.

- `policy`: what each role may do and see (permissions and PII handling), as data.
- `users`, `tokens`, `sessions`, `audit`: the stored state (tables in `schema`).
- `service.AuthService`: what the running server uses (caches, sign-in, CSRF, principals).
- `commands`: `panorama users ...`, `panorama tokens ...`, `panorama audit`.
"""
