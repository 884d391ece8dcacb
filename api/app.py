"""The litestar application."""

from pathlib import Path
from typing import Any

import litestar_offline_docs
from litestar import Litestar, MediaType, Request, get
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Server
from litestar.static_files import create_static_files_router

from api import (
    audit_log,
    domains,
    logs,
    sending,
    stats,
    suppressions,
    system,
    tokens,
    tracking,
    unsubscribe,
    webhooks,
)
from api.errors import EXCEPTION_HANDLERS
from api.rate_limits import RateLimit
from engine.runtime import Runtime

VERSION = "0.1.0"
_DOCS_ASSETS = Path(litestar_offline_docs.__file__).parent / "static"

DESCRIPTION = """Postline's sending API is wire-compatible with Mailtrap's: the official SDKs and
django-anymail work unchanged. Authenticate with `Authorization: Bearer <token>` or
`Api-Token: <token>`. The bulk stream is served under `/bulk` (`/bulk/api/send`)."""


_SWAGGER = SwaggerRenderPlugin(
    path="/swagger",
    js_url="/static/swagger-ui-bundle.js",
    css_url="/static/swagger-ui.css",
    standalone_preset_js_url="/static/swagger-ui-standalone-preset.js",
    favicon="<meta/>",  # the default icon is fetched from a CDN
)


@get(
    "/openapi.json",
    media_type="application/vnd.oai.openapi+json",
    include_in_schema=False,
    sync_to_thread=False,
)
def openapi_json(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API."""
    return request.app.openapi_schema.to_schema()


@get(["/", "/docs"], media_type=MediaType.HTML, include_in_schema=False, sync_to_thread=False)
def docs(request: Request[Any, Any, Any]) -> bytes:
    """Interactive API docs (Swagger UI), served from local assets: no CDN needed."""
    return _SWAGGER.render(request, request.app.openapi_schema.to_schema())


def create_app(
    runtime: Runtime,
    *,
    enable_noop: bool = False,
    debug: bool = False,
    suppression_rate: str = suppressions.DEFAULT_RATE,
    stats_rate: str = stats.DEFAULT_RATE,
) -> Litestar:
    """The HTTP API of one Postline process (`suppression_rate`, `stats_rate`: calls per
    account to the suppressions API and to the stats API, as `limits` writes it)."""
    handlers: list[Any] = [
        sending.transactional,
        sending.bulk,
        *logs.HANDLERS,
        *domains.HANDLERS,
        *suppressions.HANDLERS,
        *stats.HANDLERS,
        *tokens.HANDLERS,
        *audit_log.HANDLERS,
        *unsubscribe.HANDLERS,
        *tracking.HANDLERS,
        *webhooks.HANDLERS,
        system.healthz,
        system.readyz,
        system.metrics,
        openapi_json,
        docs,
        create_static_files_router(
            path="/static", directories=[_DOCS_ASSETS], include_in_schema=False
        ),
    ]
    if enable_noop:
        handlers += [system.noop, system.noop_batch]
    openapi = OpenAPIConfig(
        title="Postline",
        version=VERSION,
        description=DESCRIPTION,
        path="/schema",
        servers=[Server(url="/")],
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(type="http", scheme="bearer"),
                "HeaderAuth": SecurityScheme(
                    type="apiKey", name="Api-Token", security_scheme_in="header"
                ),
            }
        ),
        security=[{"BearerAuth": []}, {"HeaderAuth": []}],
        render_plugins=[_SWAGGER, JsonRenderPlugin(), YamlRenderPlugin()],
    )

    async def start() -> None:
        await runtime.start_background()

    async def stop() -> None:
        await runtime.stop_background()

    app = Litestar(
        route_handlers=handlers,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi,
        on_startup=[start],
        on_shutdown=[stop],
        debug=debug,
        logging_config=None,
    )
    app.state.runtime = runtime
    app.state.suppression_limit = RateLimit(suppression_rate, "suppressions")
    app.state.stats_limit = RateLimit(stats_rate, "stats")
    app.state.log_list_limit = RateLimit(logs.LIST_RATE, "email logs list")
    app.state.log_detail_limit = RateLimit(logs.DETAIL_RATE, "email log")
    app.state.instructions_limit = RateLimit(domains.INSTRUCTIONS_RATE, "setup instructions")
    return app
