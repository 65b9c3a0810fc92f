//! End-to-end test support: a real `nats-server` per test and helpers.
