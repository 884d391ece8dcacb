"""Entry points: the HTTP API (litestar) and the `postline` command line."""
