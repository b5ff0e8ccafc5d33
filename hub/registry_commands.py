"""``puskesos hub registry import``: the district's registry extract into the hub
(``docs/registry.md``)."""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from puskesos.commands import CommandError

if TYPE_CHECKING:
    from hub.cli import HubCommands
    from hub.config import HubConfig
    from hub.registry import ImportSummary
    from hub.store import HubStore

__all__ = ["add_commands"]

#: The mapping of our own national dataset's CSV files, shipped with the hub.
DATASET_MAPPING = Path(__file__).parent / "registry_maps" / "dataset.toml"


def add_commands(commands: HubCommands) -> None:
    """Register ``registry import`` and ``registry match-civil``."""
    commands.group("registry", "the district's registry extract (DTSEN)")
    parser = commands.command(
        "registry import",
        _import,
        "import households and members from CSV, XLSX or JSON Lines files",
    )
    parser.add_argument("files", nargs="+", type=Path, help="households and members files")
    parser.add_argument(
        "--mapping",
        type=Path,
        help="a TOML mapping of another column layout ('dataset' for our own national "
        "dataset's CSV files); default: the layout of docs/registry.md",
    )
    parser.add_argument("--errors", type=Path, help="the error report (default FILE.kesalahan.csv)")
    civil = commands.command(
        "registry match-civil",
        _match_civil,
        "match every member with a civil-registry extract (NIK, name, birth date, sex) and "
        "flag what differs; changes no data",
    )
    civil.add_argument("file", type=Path, help="the extract: CSV, XLSX or JSON Lines")
    civil.add_argument(
        "--mapping", type=Path, help="a TOML mapping of its columns (as for registry import)"
    )


def _layout(mapping: Path | None):  # type: ignore[no-untyped-def]
    from protocol.registry import DEFAULT_LAYOUT, LayoutError, layout_from_toml

    if mapping is None:
        return DEFAULT_LAYOUT
    path = DATASET_MAPPING if str(mapping) == "dataset" else mapping
    try:
        return layout_from_toml(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, LayoutError) as exc:
        raise CommandError(f"mapping {path}: {exc}") from None


def _progress(started: float):  # type: ignore[no-untyped-def]
    def show(rows: int, fraction: float) -> None:
        width = 30
        done = int(width * min(1.0, fraction))
        rate = rows / max(1e-6, time.monotonic() - started)
        bar = "#" * done + "-" * (width - done)
        sys.stderr.write(f"\r[{bar}] {fraction:4.0%}  {rows:,} baris  {rate:,.0f} baris/detik")
        sys.stderr.flush()

    return show


def _import(args: argparse.Namespace) -> int:
    from hub.cycle_commands import run_with_store
    from hub.registry import Report, import_files
    from hub.registry_files import FileError

    layout = _layout(args.mapping)
    report_path = args.errors or args.files[0].with_suffix(".kesalahan.csv")
    started = time.monotonic()
    progress = _progress(started) if sys.stderr.isatty() else None

    async def work(store: HubStore, config: HubConfig) -> ImportSummary:
        today = datetime.now(ZoneInfo(config.timezone)).date()
        with report_path.open("w", encoding="utf-8", newline="") as out:
            report = Report(out)
            try:
                return await import_files(
                    store, args.files, layout, report, today=today, progress=progress
                )
            except FileError as exc:
                raise CommandError(str(exc)) from None

    summary = run_with_store(args.config, work)
    if progress is not None:
        sys.stderr.write("\n")
    seconds = time.monotonic() - started
    print(
        f"{summary.rows} rows read in {seconds:.1f} s: {summary.written} written, "
        f"{summary.unchanged} unchanged, {summary.refused} refused "
        f"({summary.created} records created, {summary.updated} updated, "
        f"{summary.conflicts} conflicts, {summary.warnings} warnings, "
        f"{summary.missing} no longer in the extract)"
    )
    for village, count in sorted(summary.villages.items()):
        print(f"  {village}: {count} records written")
    print(f"report: {report_path}")
    return 0


def _match_civil(args: argparse.Namespace) -> int:
    from hub.civil import CivilSummary, match_civil
    from hub.cycle_commands import run_with_store
    from hub.registry_files import FileError

    layout = _layout(args.mapping)
    started = time.monotonic()
    progress = _progress(started) if sys.stderr.isatty() else None

    async def work(store: HubStore, config: HubConfig) -> CivilSummary:
        try:
            return await match_civil(store, args.file, layout=layout, progress=progress)
        except FileError as exc:
            raise CommandError(str(exc)) from None

    summary = run_with_store(args.config, work)
    if progress is not None:
        sys.stderr.write("\n")
    flags = ", ".join(f"{code} {count}" for code, count in sorted(summary.flags.items()))
    print(
        f"{summary.civil_rows} civil-registry rows loaded ({summary.skipped_rows} without a "
        f"valid NIK and name), {summary.members} members matched in "
        f"{time.monotonic() - started:.1f} s: {summary.changed} changed flags; "
        f"flagged: {flags or 'none'}"
    )
    return 0
