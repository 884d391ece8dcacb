"""Where Postline keeps its data: resolve the store URL and the data folder."""

import os
from pathlib import Path

from adapters.database import InvalidDatabaseUrl, StoreUrl, parse_url

__all__ = ["InvalidDatabaseUrl", "StoreUrl", "data_dir", "store_url"]


def data_dir(given: str | None) -> Path:
    """`--data-dir`, else POSTLINE_DATA_DIR, else ./postline-data."""
    return Path(given or os.environ.get("POSTLINE_DATA_DIR") or "postline-data")


def store_url(given: str | None, data: Path) -> StoreUrl:
    """`--database-url`, else POSTLINE_DATABASE_URL, else SQLite in the data folder."""
    url = given or os.environ.get("POSTLINE_DATABASE_URL") or f"sqlite:///{data / 'postline.db'}"
    return parse_url(url)
