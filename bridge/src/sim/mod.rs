//! A scriptable fake Discord gateway (WebSocket + `GET /gateway/bot`).
