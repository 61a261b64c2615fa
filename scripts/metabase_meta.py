"""Print the Metabase metadata of the marts as dbt-metabase will push it.

Reads a dbt manifest with dbt-metabase's own manifest reader (`dbtmetabase.manifest.Manifest`,
the code `dbt-metabase models` runs) and prints, per vw_* model, its display name and for
every column the display name, visibility, semantic type (with a foreign key's target),
field-values setting and number format. Without `--manifest` it first runs `dbt parse`
with profiles.example.yml into a temporary directory (no database needed; the schema
names are those of the current ATLAS_ANALYTICS_SCHEMA, default `analytics`).

    python scripts/metabase_meta.py                      # parse, then print
    python scripts/metabase_meta.py --manifest target/manifest.json

Needs the `metabase` (or `dev`) extra: `pip install -e '.[metabase]'`. docs/metabase.md
explains the keys and how to push them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from dbtmetabase.manifest import Column, Manifest, Model

REPO = Path(__file__).resolve().parent.parent


def parse_project(work: Path) -> Path:
    """Run `dbt parse` on the project with the example profile; the manifest's path."""
    from dbt.cli.main import dbtRunner

    profiles = work / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "profiles.example.yml", profiles / "profiles.yml")
    result = dbtRunner().invoke(
        [
            "parse",
            "--project-dir",
            str(REPO),
            "--profiles-dir",
            str(profiles),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
            "--quiet",
        ]
    )
    if not result.success:
        raise SystemExit(f"dbt parse failed: {result.exception}")
    return work / "target" / "manifest.json"


def marts(manifest: Path) -> list[Model]:
    """The vw_* models of the manifest as dbt-metabase reads them, by name."""
    models = Manifest(manifest).read_models()
    return sorted((m for m in models if m.name.startswith("vw_")), key=lambda m: m.name)


def _semantic(column: Column) -> str:
    if column.semantic_type == "type/FK":
        return f"type/FK -> {column.fk_target_table}.{column.fk_target_field}"
    return column.semantic_type or "-"


def _format(column: Column) -> str:
    parts = [
        f"{key}={value}"
        for key, value in (
            ("values", column.has_field_values),
            ("style", column.number_style),
            ("decimals", column.decimals),
            ("currency", column.currency),
        )
        if value is not None
    ]
    return " ".join(parts) or "-"


def render(models: Iterable[Model]) -> str:
    """A plain-text table per model: column, display name, visibility, semantic type, format."""
    lines: list[str] = []
    for model in models:
        where = f"{model.schema}.{model.alias}"
        lines.append(f"{model.name}  ({where})  display name: {model.display_name}")
        rows = [("column", "display name", "visibility", "semantic type", "format")]
        rows += [
            (
                c.name,
                c.display_name or "-",
                c.visibility_type or "normal",
                _semantic(c),
                _format(c),
            )
            for c in model.columns
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            lines.append("  " + "  ".join([*cells, row[4]]).rstrip())
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="a dbt manifest.json (default: dbt parse)")
    args = parser.parse_args(argv)
    if args.manifest is not None:
        print(render(marts(args.manifest)))
        return 0
    with tempfile.TemporaryDirectory(prefix="metabase-meta-") as tmp:
        print(render(marts(parse_project(Path(tmp)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
