"""REST face over the services: the public room directory and the system's figures."""

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from services.common import bus, stats
from services.common.contracts import subjects
from services.common.contracts.envelope import DirectoryQuery
from services.common.contracts.errors import ErrorCode, ServiceError

from . import metrics

router = APIRouter()

# How long GET /api/stats collects replies: every process on one bus answers within a few ms;
# a replica slower than this is left out of the figures rather than slowing the page.
STATS_WINDOW_S = 0.3


@router.get("/api/rooms")
async def public_rooms(request: Request) -> Response:
    """Public rooms with someone online, busiest first (`?limit=1-100&offset=`); private
    rooms are found by code only."""
    params = {k: v for k, v in request.query_params.items() if k in ("limit", "offset")}
    try:
        query = DirectoryQuery.model_validate(params)
    except ValidationError as exc:
        raise ServiceError(ErrorCode.BAD_REQUEST, bus.validation_message(exc)) from exc
    reply = await bus.request(
        request.app.state.gw.nc, subjects.command("rooms", "directory"), query, timeout_s=3.0
    )
    return Response(orjson.dumps(reply), media_type="application/json")


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus scrape (the gateway's /healthz and /readyz are in app.py). The gauges are
    read at scrape time from the live state."""
    gw = request.app.state.gw
    metrics.CONNECTIONS.set(len(gw.connections))
    metrics.ROOMS.set(gw.hub.room_count)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/stats")
async def system_stats(request: Request) -> dict[str, Any]:
    replies = await stats.gather(request.app.state.gw.nc, STATS_WINDOW_S)
    return stats.summarize(replies, STATS_WINDOW_S)
