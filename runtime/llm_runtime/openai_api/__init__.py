"""An OpenAI-compatible HTTP API beside gRPC, on the same engine and serving state.

- `schema`: request bodies (pydantic) and their conversion to `types.GenerationRequest` (pure).
- `render`: response bodies and stream chunks from engine events (pure).
- `errors`: OpenAI's error shape and the mapping from domain errors to HTTP status codes (pure).
- `sse`: Server-Sent Events encoding.
- `app`: the Starlette app (`build_app(state, settings)`): routes, auth, the engine loop.
- `serve`: uvicorn inside the runtime's event loop (`await serve.serve(app, host=..., port=...)`).

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`.
"""
