"""`agentflow-auth create-admin` makes (or promotes) an admin; `agentflow-auth set-role` makes
an existing account an admin or a user again (a demotion applies to its tokens at once).

Writes straight to the auth service's store; a running auth service relays the event to NATS.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable

from services.auth.application import AuthApplication, UserView
from services.auth.settings import AuthSettings
from shared.errors import AppError
from shared.security.tokens import ROLES
from shared.settings_loading import SETTINGS_HELP, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agentflow-auth",
        description=__doc__,
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create-admin",
        help="create an admin, or promote a user",
        description="Create an admin account, or make an existing account of that name an "
        "admin. The password comes from AGENTFLOW_ADMIN_PASSWORD, or is asked for.",
    )
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    create.add_argument(
        "--promote",
        action="store_true",
        help="make an existing account of that name admin even if its email or password differ",
    )
    role = commands.add_parser(
        "set-role",
        help="make an existing user an admin or a user",
        description="Make an existing account an admin or a user again; a demotion applies "
        "to the tokens it already holds at once.",
    )
    role.add_argument("--username", required=True)
    role.add_argument("--role", required=True, choices=ROLES)
    args = parser.parse_args(argv)

    if args.command == "set-role":
        return _run(lambda app: app.set_role(args.username, args.role), f"is {args.role} now")
    password = os.environ.get("AGENTFLOW_ADMIN_PASSWORD") or getpass.getpass("Password: ")
    return _run(
        lambda app: app.ensure_admin(args.username, args.email, password, promote=args.promote),
        "is an admin",
    )


def _run(command: Callable[[AuthApplication], UserView], outcome: str) -> int:
    application = AuthApplication(load_settings(AuthSettings, "agentflow-auth", tool=True))
    try:
        user = command(application)
    except AppError as exc:
        print(f"error: {exc.error_code}: {exc.detail('en')}", file=sys.stderr)
        return 1
    finally:
        application.close()
    print(f"{user.username} ({user.id}) {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
