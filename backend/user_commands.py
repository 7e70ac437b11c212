"""``kensa users add | list | passwd | remove``: manage accounts on the database directly
(the service's settings: ``--data-dir``, ``--database-url`` or the ``KENSA_`` environment)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from kensa.backend import db
from kensa.backend.config import Settings
from kensa.backend.core.security import ROLES
from kensa.backend.services import accounts

ACTOR = "cli"


def register(subparsers: argparse._SubParsersAction) -> None:
    users = subparsers.add_parser("users", help="manage sign-in accounts (on the database)")
    commands = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = commands.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, default="operator")
    _password_args(add)
    commands.add_parser("list", help="list the users")
    passwd = commands.add_parser("passwd", help="set a user's password (ends their sessions)")
    passwd.add_argument("username")
    _password_args(passwd)
    remove = commands.add_parser("remove", help="delete a user (ends their sessions)")
    remove.add_argument("username")
    for parser in (add, passwd, remove, commands.choices["list"]):
        parser.add_argument("--data-dir", type=Path, help="the service's data directory")
        parser.add_argument("--database-url", help="the service's database")
        parser.set_defaults(handler=users_command)


def _password_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (default: prompt)")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise accounts.AccountError(422, "the passwords differ")
    return first


def users_command(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.database_url:
        overrides["database_url"] = args.database_url
    settings = Settings(**overrides)
    settings.ensure_dirs()
    engine = db.make_engine(settings.database_url)
    try:
        db.upgrade(engine)
        if args.users_command == "list":
            for user in accounts.list_users(engine):
                state = " (disabled)" if user.disabled else ""
                print(f"{user.username}\t{user.role}{state}")
        elif args.users_command == "add":
            accounts.create_user(engine, args.username, _password(args), args.role, ACTOR)
            print(f"created {args.username} ({args.role})")
        elif args.users_command == "passwd":
            accounts.update_user(engine, args.username, ACTOR, password=_password(args))
            print(f"password of {args.username} changed; their sessions ended")
        else:
            accounts.remove_user(engine, args.username, ACTOR)
            print(f"removed {args.username}")
    except accounts.AccountError as exc:
        print(f"kensa users: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0
