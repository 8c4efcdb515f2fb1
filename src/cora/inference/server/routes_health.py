"""``GET /health``: the model, what it sees of a panorama, its decoding options and the server's limits."""

from __future__ import annotations

from fastapi import APIRouter

from cora.inference.server.deps import Service
from cora.inference.server.schemas import HealthResponse

router = APIRouter()


@router.get("/health", response_model=HealthResponse)
async def health(service: Service) -> HealthResponse:
    return service.health()
