//! The chaos soak (README, Delivery guarantees): events through two bridge
//! processes and a 3-node cluster while every fault the bridge claims to
//! survive is injected; then every event is accounted for. The short run
//! is part of the suite; `scripts/soak` runs the long one.

use discord_bridge_e2e::chaos::{Report, SoakOptions, run};

#[allow(clippy::print_stderr, reason = "the report is the soak's output")]
fn check(report: &Report) {
    let table = report.table();
    eprintln!("{table}");
    assert!(report.failures().is_empty(), "{table}");
}

/// Every fault kind once, about 2 500 events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_once_loses_nothing_unreported_and_doubles_nothing() {
    check(&run(SoakOptions::from_env(2_500, 1, 150)).await);
}

/// The long soak (`scripts/soak`): 100 000 events by default, every fault
/// kind many times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run by scripts/soak"]
async fn soak() {
    check(&run(SoakOptions::from_env(100_000, 12, 600)).await);
}
