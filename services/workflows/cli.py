"""`agentflow-workflows rebuild-read-model`: project the workflow list again from zero."""

from __future__ import annotations

import argparse
import sys

from services.workflows.application import WorkflowsApplication
from services.workflows.readmodel import WorkflowList
from services.workflows.settings import WorkflowsSettings
from shared.readmodel import read_model_engine, read_model_metadata
from shared.settings_loading import SETTINGS_HELP, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agentflow-workflows",
        description=__doc__,
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "rebuild-read-model",
        help="drop and re-project the workflow list",
        description="Drop the workflow list read model and project it again from every "
        "stored event.",
    )
    parser.parse_args(argv)

    settings = load_settings(WorkflowsSettings, "agentflow-workflows", tool=True)
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
