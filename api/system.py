"""Health checks, Prometheus metrics, and the no-op endpoint that benchmarks use as the
framework's ceiling."""

from typing import Any

from litestar import Request, Response, get, post
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from api.body import read_json
from domain.limits import DEFAULT_LIMITS
from domain.submission import BatchDraft, Draft
from engine.errors import StoreUnavailable
from engine.runtime import Runtime
from engine.status import Status, status

NOOP_MESSAGE_ID = "00000000-0000-0000-0000-000000000000"


@get("/healthz", tags=["System"], summary="Liveness", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["System"], summary="Readiness: the event store answers")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    runtime: Runtime = request.app.state.runtime
    try:
        head = await runtime.run(runtime.store.head)
    except StoreUnavailable as error:
        return Response({"status": "unavailable", "error": str(error)}, status_code=503)
    committer = runtime.committer
    return Response(
        {
            "status": "ready",
            "log_position": head,
            "commits": {"transactions": committer.batches, "events": committer.events},
        }
    )


class _Snapshot:
    """A Prometheus collector over one status reading and this process's committer."""

    def __init__(self, now: Status, runtime: Runtime) -> None:
        self.now, self.runtime = now, runtime

    def collect(self) -> Any:
        yield GaugeMetricFamily(
            "postline_log_head", "Id of the newest event in the log", value=self.now.head
        )
        position = GaugeMetricFamily(
            "postline_follower_position",
            "Last log id each read model or process has read past",
            labels=["name", "kind"],
        )
        lag = GaugeMetricFamily(
            "postline_follower_lag_events",
            "Log events each read model or process has not read yet",
            labels=["name", "kind"],
        )
        for follower in self.now.followers:
            position.add_metric([follower.name, follower.kind], follower.position)
            lag.add_metric([follower.name, follower.kind], follower.lag)
        yield position
        yield lag
        yield GaugeMetricFamily(
            "postline_delivery_queue_messages",
            "Messages waiting for delivery, due or not",
            value=self.now.queued,
        )
        committer = self.runtime.committer
        yield CounterMetricFamily(
            "postline_commit_transactions",
            "Transactions this process committed to the log",
            value=committer.batches,
        )
        yield CounterMetricFamily(
            "postline_committed_events", "Events this process committed", value=committer.events
        )


@get("/metrics", tags=["System"], summary="Prometheus metrics: log head, read-model lag, queue")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    runtime: Runtime = request.app.state.runtime
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(await runtime.run(status, runtime), runtime))
    return Response(
        generate_latest(registry),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )


@post("/api/_noop", status_code=200, include_in_schema=False)
async def noop(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Decode and validate like /api/send, store nothing (enabled with --enable-noop-endpoint)."""
    await read_json(request, Draft)
    return {"success": True, "message_ids": [NOOP_MESSAGE_ID]}


@post(
    "/api/_noop/batch",
    status_code=200,
    include_in_schema=False,
    request_max_body_size=DEFAULT_LIMITS.max_batch_bytes,
)
async def noop_batch(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Decode and validate like /api/batch, store nothing (enabled with --enable-noop-endpoint)."""
    await read_json(request, BatchDraft)
    return {"success": True, "responses": [], "errors": []}
