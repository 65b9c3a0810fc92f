//! See tests/real_dispatcher.rs.
