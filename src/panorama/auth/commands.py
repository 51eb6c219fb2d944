"""`panorama users ...`, `panorama tokens ...` and `panorama audit`: the same functions the
admin pages of the web UI call. The command line acts as admin (it owns the store file)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project directory (holds panorama.yaml).", show_default=True)
]
RoleOpt = Annotated[str, typer.Option("--role", "-r", help="admin, marketing, sales, support or analyst.")]

users_app = typer.Typer(help="Users of the web UI (roles: admin, marketing, sales, support, analyst).",
                        no_args_is_help=True)  # fmt: skip
tokens_app = typer.Typer(help="Read tokens for the REST API (each with a role).", no_args_is_help=True)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


def _when(t) -> str:
    return f"{t:%Y-%m-%d %H:%M}" if t else ""


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Sign-in name.")],
    role: RoleOpt,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from "
                                                 "standard input instead of prompting.")] = False,  # fmt: skip
    project: ProjectOpt = Path("."),
) -> None:
    """Create a user with a password (argon2id-hashed)."""
    from panorama.auth import audit
    from panorama.auth.policy import cli_principal
    from panorama.auth.users import UserError, check_password, create_user
    from panorama.cli import console, fail, project_store

    password = _read_password(password_stdin)
    try:
        check_password(password)
    except UserError as exc:
        fail(str(exc))
    with project_store(project) as (_, store):
        try:
            user = create_user(store, username, role, password, name)
        except UserError as exc:
            fail(str(exc))
        audit.record(store, cli_principal(), "user_created", detail={"username": username, "role": role})
    console.print(f"created user [bold]{user.username}[/] ({user.role})", highlight=False)


@users_app.command("list")
def users_list(project: ProjectOpt = Path(".")) -> None:
    """Users with role, created, last sign-in and disabled."""
    from panorama.auth.users import list_users
    from panorama.cli import console, project_store

    with project_store(project) as (_, store):
        rows = list_users(store)
    table = Table("username", "name", "role", "created (UTC)", "last sign-in (UTC)", "disabled (UTC)")
    for u in rows:
        table.add_row(u.username, u.display_name or "", u.role, _when(u.created_at), _when(u.last_login_at),
                      _when(u.disabled_at))  # fmt: skip
    console.print(table)
    if not rows:
        console.print("no users; create one with `panorama users create NAME --role admin`")


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="Sign-in name.")],
                  project: ProjectOpt = Path(".")) -> None:  # fmt: skip
    """Disable a user: their sessions end and they can no longer sign in."""
    from panorama.auth import audit
    from panorama.auth.policy import cli_principal
    from panorama.auth.users import UserError, disable_user
    from panorama.cli import console, fail, project_store

    with project_store(project) as (_, store):
        try:
            user = disable_user(store, username)
        except UserError as exc:
            fail(str(exc))
        audit.record(store, cli_principal(), "user_disabled", detail={"username": username})
    console.print(f"disabled {user.username}")


@users_app.command("enable")
def users_enable(username: Annotated[str, typer.Argument(help="Sign-in name.")],
                 project: ProjectOpt = Path(".")) -> None:  # fmt: skip
    """Enable a disabled user again."""
    from panorama.auth import audit
    from panorama.auth.policy import cli_principal
    from panorama.auth.users import UserError, enable_user
    from panorama.cli import console, fail, project_store

    with project_store(project) as (_, store):
        try:
            user = enable_user(store, username)
        except UserError as exc:
            fail(str(exc))
        audit.record(store, cli_principal(), "user_enabled", detail={"username": username})
    console.print(f"enabled {user.username}")


@users_app.command("password")
def users_password(
    username: Annotated[str, typer.Argument(help="Sign-in name.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Set a user's password (their sessions end)."""
    from panorama.auth import audit
    from panorama.auth.policy import cli_principal
    from panorama.auth.users import UserError, set_password
    from panorama.cli import console, fail, project_store

    password = _read_password(password_stdin)
    with project_store(project) as (_, store):
        try:
            set_password(store, username, password)
        except UserError as exc:
            fail(str(exc))
        audit.record(store, cli_principal(), "password_set", detail={"username": username})
    console.print(f"password of {username} changed")


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="What the token is for (e.g. 'crm sync').")],
    role: RoleOpt,
    project: ProjectOpt = Path("."),
) -> None:
    """Create a read token for the REST API and print it (shown only once)."""
    from panorama.auth import audit
    from panorama.auth.policy import cli_principal
    from panorama.auth.tokens import TokenError, create_token
    from panorama.cli import console, fail, project_store

    with project_store(project) as (_, store):
        try:
            record, token = create_token(store, name, role, "cli")
        except TokenError as exc:
            fail(str(exc))
        audit.record(store, cli_principal(), "token_created", detail={"token_id": record.token_id, "role": role})
    console.print(f"API token [bold]{record.name}[/] ({record.role}, id {record.token_id}); "
                  "store it now, it is not shown again:", highlight=False)  # fmt: skip
    typer.echo(token)


@tokens_app.command("list")
def tokens_list(all_tokens: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
                project: ProjectOpt = Path(".")) -> None:  # fmt: skip
    """API tokens (id, name, role, prefix, created, revoked)."""
    from panorama.auth.tokens import list_tokens
    from panorama.cli import console, project_store

    with project_store(project) as (_, store):
        rows = list_tokens(store, include_revoked=all_tokens)
    table = Table("id", "name", "role", "token starts", "created by", "created (UTC)", "revoked (UTC)")
    for t in rows:
        table.add_row(t.token_id, t.name, t.role, t.prefix + "…", t.created_by or "", _when(t.created_at),
                      _when(t.revoked_at))  # fmt: skip
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id.")],
                  project: ProjectOpt = Path(".")) -> None:  # fmt: skip
    """Revoke an API token: requests with it get 401 from then on."""
    from panorama.auth import audit
    from panorama.auth.policy import cli_principal
    from panorama.auth.tokens import TokenError, revoke_token
    from panorama.cli import console, fail, project_store

    with project_store(project) as (_, store):
        try:
            record = revoke_token(store, token_id)
        except TokenError as exc:
            fail(str(exc))
        audit.record(store, cli_principal(), "token_revoked", detail={"token_id": token_id})
    console.print(f"revoked {record.token_id} ({record.name})")


def audit_cmd(
    profile: Annotated[str | None, typer.Option(help="Only views of this profile id.")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this user or token name.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action (profile_view, sign_in, ...).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 50,
    project: ProjectOpt = Path("."),
) -> None:
    """The audit log, newest first: who viewed which profile, sign-ins, user and token changes."""
    from panorama.auth.audit import entries
    from panorama.cli import console, project_store

    with project_store(project) as (_, store):
        rows = entries(store, profile_id=profile, actor=actor, action=action, limit=limit)
    table = Table("when (UTC)", "who", "role", "action", "profile", "detail")
    for e in rows:
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", f"{e.actor_kind}:{e.actor}", e.role or "", e.action,
                      e.profile_id or "", ", ".join(f"{k}={v}" for k, v in (e.detail or {}).items()))  # fmt: skip
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
    app.command("audit")(audit_cmd)
