"""`agentflow-auth create-admin`: make (or promote) an admin from the command line.

Writes straight to the auth service's store; a running auth service relays the event to NATS.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from services.auth.application import AuthApplication
from services.auth.settings import AuthSettings
from shared.errors import AppError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentflow-auth")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="create an admin, or promote a user")
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    args = parser.parse_args(argv)

    password = os.environ.get("AGENTFLOW_ADMIN_PASSWORD") or getpass.getpass("Password: ")
    application = AuthApplication(AuthSettings())
    try:
        user = application.ensure_admin(args.username, args.email, password)
    except AppError as exc:
        print(f"error: {exc.error_code}: {exc.detail('en')}", file=sys.stderr)
        return 1
    finally:
        application.close()
    print(f"admin {user.username} ({user.id}) is ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
