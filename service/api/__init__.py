"""The HTTP API and the search page: the app, routes, schemas, security, limits, observability."""
