//! The soak's report: faults injected per kind with their recovery times,
//! and the [`Audit`] of what was sent, stored and lost — as a table for
//! people and as JSON (`CHAOS_REPORT`) for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::audit::Audit;

/// One fault kind: how often it was injected and how long the recovery
/// took (from the injection until the simulator saw the shard RESUME or
/// IDENTIFY, or for NATS faults until traffic was stored again).
#[derive(Debug, Clone, Serialize)]
pub struct FaultRow {
    /// The fault.
    pub fault: String,
    /// How often.
    pub injected: usize,
    /// Mean recovery, milliseconds.
    pub recovery_mean_ms: u64,
    /// Slowest recovery, milliseconds.
    pub recovery_max_ms: u64,
}

impl FaultRow {
    /// The row for `fault` from its recovery times.
    #[must_use]
    pub fn new(fault: &str, times: &[Duration]) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let total: u64 = times.iter().copied().map(ms).sum();
        Self {
            fault: fault.to_owned(),
            injected: times.len(),
            recovery_mean_ms: total / (times.len() as u64).max(1),
            recovery_max_ms: times.iter().copied().map(ms).max().unwrap_or(0),
        }
    }
}

/// Everything a soak found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `CHAOS_SEED`.
    pub seed: u64,
    /// `CHAOS_EVENTS`.
    pub events: u64,
    /// `CHAOS_ROUNDS`.
    pub rounds: u32,
    /// `CHAOS_RATE`.
    pub rate: u32,
    /// How long it ran.
    pub wall_secs: u64,
    /// Bridge processes started.
    pub processes: u32,
    /// Per fault kind.
    pub faults: Vec<FaultRow>,
    /// IDENTIFYs due: one per shard at the start, one per fault that ended
    /// a session.
    pub identifies_expected: usize,
    /// IDENTIFYs Discord answered with READY.
    pub identifies: usize,
    /// Faults after which the number of new sessions was not the one due.
    pub surprises: Vec<String>,
    /// How the slower recoveries went, phase by phase.
    pub notes: Vec<String>,
    /// Discord rules the bridge broke (identify floor, send rate…).
    pub violations: Vec<String>,
    /// Payloads on the status subject that were not status events.
    pub malformed_statuses: Vec<String>,
    /// Sent, stored, lost, duplicated.
    pub audit: Audit,
}

impl Report {
    /// What went wrong; empty when every guarantee held.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        let a = &self.audit;
        let mut out = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                out.push(what);
            }
        };
        check(
            a.unreported.is_empty(),
            format!(
                "{} lost events not reported: {:?}",
                a.unreported.len(),
                first(&a.unreported)
            ),
        );
        check(
            a.duplicates.is_empty(),
            format!(
                "{} events stored twice: {:?}",
                a.duplicates.len(),
                first(&a.duplicates)
            ),
        );
        check(
            a.unknown.is_empty(),
            format!("stream messages of no sent event: {:?}", first(&a.unknown)),
        );
        check(
            a.refusals_unreported.is_empty(),
            format!(
                "refusals the bridge did not report: {:?}",
                first(&a.refusals_unreported)
            ),
        );
        check(
            a.reports_unconfirmed.is_empty(),
            format!(
                "losses reported that the simulator did not refuse: {:?}",
                first(&a.reports_unconfirmed)
            ),
        );
        check(
            a.stored_unique + a.lost == a.sent,
            format!(
                "stored ({}) + lost ({}) != sent ({})",
                a.stored_unique, a.lost, a.sent
            ),
        );
        check(
            self.identifies == self.identifies_expected && self.surprises.is_empty(),
            format!(
                "{} IDENTIFYs, {} due: {:?}",
                self.identifies, self.identifies_expected, self.surprises
            ),
        );
        check(
            self.violations.is_empty(),
            format!("Discord rules broken: {:?}", self.violations),
        );
        check(
            self.malformed_statuses.is_empty(),
            format!(
                "malformed status events: {:?}",
                first(&self.malformed_statuses)
            ),
        );
        out
    }

    /// The report as a plain-text table.
    #[must_use]
    pub fn table(&self) -> String {
        let a = &self.audit;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "chaos soak: CHAOS_SEED={} CHAOS_EVENTS={} CHAOS_ROUNDS={} CHAOS_RATE={} ({} s, {} bridge processes)",
            self.seed, self.events, self.rounds, self.rate, self.wall_secs, self.processes
        );
        let _ = writeln!(
            t,
            "| fault | injected | recovery mean ms | recovery max ms |\n|---|---:|---:|---:|"
        );
        for row in &self.faults {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} |",
                row.fault, row.injected, row.recovery_mean_ms, row.recovery_max_ms
            );
        }
        let total: usize = self.faults.iter().map(|r| r.injected).sum();
        let _ = writeln!(t, "| all | {total} | | |");
        let _ = writeln!(t);
        let _ = writeln!(t, "| events | count |\n|---|---:|");
        for (what, n) in [
            ("sent", a.sent),
            ("stored (distinct)", a.stored_unique),
            ("stream messages", a.stored),
            (
                "lost, reported by the bridge and refused by Discord",
                a.lost_reported,
            ),
            ("lost, unreported", a.unreported.len() as u64),
            ("duplicated", a.duplicates.len() as u64),
            (
                "stored after a later one of its session",
                a.out_of_order.len() as u64,
            ),
        ] {
            let _ = writeln!(t, "| {what} | {n} |");
        }
        let _ = writeln!(
            t,
            "\nIDENTIFYs: {} (due: {}); Discord rules broken: {}",
            self.identifies,
            self.identifies_expected,
            self.violations.len()
        );
        for o in a.out_of_order.iter().take(5) {
            let _ = writeln!(
                t,
                "out of order: session {} seq {} stored after seq {} (stream seq {})",
                o.session_id, o.seq, o.after, o.stream_seq
            );
        }
        for note in &self.notes {
            let _ = writeln!(t, "{note}");
        }
        if !a.refusals.is_empty() {
            let _ = writeln!(
                t,
                "\nDiscord refused (simulator) vs the bridge's reports:\n\
                 | shard | session | refused seqs | cause | sent events in it stored / lost | bridge: last stored seq, lost |\n\
                 |---|---|---|---|---|---|"
            );
            for r in &a.refusals {
                let bridge: Vec<String> = a
                    .reports
                    .iter()
                    .filter(|p| p.session_id == r.session_id)
                    .map(|p| match p.lost {
                        Some((from, to)) => format!("{}, {from}..={to}", p.last_seq),
                        None => format!("{}, -", p.last_seq),
                    })
                    .collect();
                let bridge = if bridge.is_empty() {
                    "NOT REPORTED".to_owned()
                } else {
                    bridge.join("; ")
                };
                let _ = writeln!(
                    t,
                    "| {} | {} | {}..={} | {} | {} / {} | {bridge} |",
                    r.shard, r.session_id, r.from, r.to, r.cause, r.stored, r.lost
                );
            }
        }
        if !a.lost_ranges.is_empty() {
            let _ = writeln!(t, "\nlost events:");
            for r in &a.lost_ranges {
                let _ = writeln!(
                    t,
                    "  shard {} session {} seq {}..={}: {} events, {}",
                    r.shard,
                    r.session_id,
                    r.from,
                    r.to,
                    r.events,
                    if r.reported { "reported" } else { "UNREPORTED" }
                );
            }
        }
        let failures = self.failures();
        if failures.is_empty() {
            let _ = writeln!(t, "\nevery guarantee held");
        } else {
            let _ = writeln!(t, "\nFAILED:\n  {}", failures.join("\n  "));
        }
        t
    }
}

/// The first few items, for a failure message.
fn first<T: Clone>(items: &[T]) -> Vec<T> {
    items.iter().take(5).cloned().collect()
}
