"""FastAPI dependencies: the app's loaded engine and its settings."""

from __future__ import annotations

from fastapi import Request

from service.engine import Engine
from service.observability import Metrics
from service.settings import Settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics
