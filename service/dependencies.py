"""FastAPI dependencies: access to the app's loaded engine."""

from __future__ import annotations

from fastapi import Request

from service.engine import Engine


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine
