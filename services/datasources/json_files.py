"""Moving json sources' files into their owners' directories (`agentflow-datasources
copy-json-files`).

Files used to live in one directory every user could name (`<json_dir>/<file>`); now a source
reads `<json_dir>/<owner id>/<file>`. After an upgrade the operator runs the command once: for
every json source naming a file, the old shared file is copied into its owner's directory,
unless a file is there already. Copied, not moved: two users' sources may have named the same
file, and each keeps what it could read. The shared copies stay for the operator to delete;
no source reads them any more.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID


@dataclass
class CopyReport:
    copied: list[Path] = field(default_factory=list)  # new files in an owner's directory
    present: int = 0  # the owner had the file already
    missing: list[Path] = field(default_factory=list)  # no old file to copy (or not a file)
    # a name leading out of the directory, or into a user's directory
    refused: list[str] = field(default_factory=list)


def copy_into_owner_dirs(json_dir: Path, files: Iterable[tuple[UUID, str]]) -> CopyReport:
    """Copy `<json_dir>/<file>` to `<json_dir>/<owner>/<file>` for each (owner, file)."""
    root = json_dir.resolve()
    report = CopyReport()
    for owner, file in files:
        old = (root / file).resolve()
        new = root / str(owner) / file
        if (
            not old.is_relative_to(root)
            or _in_a_user_directory(old.relative_to(root))
            or not new.resolve().is_relative_to(root / str(owner))
        ):
            report.refused.append(file)
            continue
        if new.exists():
            report.present += 1
            continue
        if not old.is_file():
            report.missing.append(old)
            continue
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(old, new)
        report.copied.append(new)
    return report


def _in_a_user_directory(relative: Path) -> bool:
    """Whether a path under the root is inside some user's directory: never copied to
    another user, even if an old source named it."""
    try:
        UUID(relative.parts[0])
    except (ValueError, IndexError):
        return False
    return True
