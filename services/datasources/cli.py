"""`agentflow-datasources`: re-encrypt secrets with the newest key, rebuild the list, or copy
json sources' files from the old shared directory into their owners' directories."""

from __future__ import annotations

import argparse
import sys

from services.datasources.application import DataSourcesApplication
from services.datasources.json_files import copy_into_owner_dirs
from services.datasources.readmodel import DataSourceList
from services.datasources.settings import DataSourcesSettings
from shared.readmodel import read_model_engine, read_model_metadata
from shared.settings_loading import SETTINGS_HELP, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agentflow-datasources",
        description=__doc__,
        epilog=SETTINGS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "rotate-secrets",
        help="re-encrypt every data source's secrets with the first of AGENTFLOW_SECRETS_KEYS",
        description="Re-encrypt every data source's secrets with the first key of "
        "AGENTFLOW_SECRETS_KEYS (put the new key first, restart, run this, then drop the old "
        "key).",
    )
    commands.add_parser(
        "rebuild-read-model",
        help="drop and re-project the data source list",
        description="Drop the data source list read model and project it again from every "
        "stored event.",
    )
    commands.add_parser(
        "copy-json-files",
        help="copy each json source's file from <json_dir>/<file> (shared by every user "
        "before) to its owner's <json_dir>/<owner id>/<file>",
        description="Copy each json source's file from <json_dir>/<file> (shared by every "
        "user before) to its owner's <json_dir>/<owner id>/<file>; files already there are "
        "kept.",
    )
    args = parser.parse_args(argv)

    settings = load_settings(DataSourcesSettings, "agentflow-datasources", tool=True)
    application = DataSourcesApplication(settings)
    engine = read_model_engine(settings)
    try:
        listing = DataSourceList(application, engine, read_model_metadata(settings))
        listing.projection.create_tables()
        if args.command == "rebuild-read-model":
            applied = listing.projection.rebuild()
            print(f"data source list rebuilt from {applied} stored events")
        elif args.command == "copy-json-files":
            files = application.json_files(listing.all_ids())
            report = copy_into_owner_dirs(settings.json_directory, files)
            print(
                f"{len(report.copied)} files copied into their owners' directories, "
                f"{report.present} already there, {len(report.missing)} missing, "
                f"{len(report.refused)} refused"
            )
            for path in report.missing:
                print(f"missing: {path}")
        else:
            rotated = application.rotate_secrets(listing.all_ids())
            print(f"secrets of {rotated} data sources re-encrypted with the first key")
    finally:
        engine.dispose()
        application.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
