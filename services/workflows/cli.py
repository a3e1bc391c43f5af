"""`agentflow-workflows rebuild-read-model`: project the workflow list again from zero."""

from __future__ import annotations

import argparse
import sys

from services.workflows.application import WorkflowsApplication
from services.workflows.readmodel import WorkflowList
from services.workflows.settings import WorkflowsSettings
from shared.readmodel import read_model_engine, read_model_metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentflow-workflows")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("rebuild-read-model", help="drop and re-project the workflow list")
    parser.parse_args(argv)

    settings = WorkflowsSettings()
    application = WorkflowsApplication(settings)
    engine = read_model_engine(settings)
    try:
        listing = WorkflowList(application, engine, read_model_metadata(settings))
        listing.projection.create_tables()
        applied = listing.projection.rebuild()
        print(f"workflow list rebuilt from {applied} stored events")
    finally:
        engine.dispose()
        application.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
