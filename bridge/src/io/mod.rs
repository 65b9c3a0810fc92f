//! The async shell: sockets, timers, NATS, tasks.
