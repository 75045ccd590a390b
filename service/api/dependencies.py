"""FastAPI dependencies: the app's loaded engine, its settings and metrics, as `Annotated` aliases that
routes name in their signatures (`engine: EngineDep`).

They are `async def` because they do no blocking work: FastAPI runs a plain `def` dependency in its
threadpool, and each such hop costs a request about 0.1 ms on two cores.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.observability import Metrics
from service.engine import Engine
from service.settings import Settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
