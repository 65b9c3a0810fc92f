//! Configuration: defaults < `discord-bridge.toml` < environment.
