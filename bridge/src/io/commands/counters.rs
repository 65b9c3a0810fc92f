//! How many commands of each op got each answer: relaxed atomics, written
//! by the command listener, read by whoever reports them (logs, metrics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use discord_bridge_schemas::CommandErrorCode;

use crate::gateway::command::Op;

/// The op of a request, where it is known.
const OPS: usize = Op::ALL.len() + 1;
/// `ok` and every error code.
const RESULTS: usize = CommandErrorCode::ALL.len() + 1;

/// Answers per (op, result). `op` is `other` for requests refused before
/// their op was known; `result` is `ok` or an error code.
#[derive(Debug, Default)]
pub(crate) struct CommandCounters {
    counts: [[AtomicU64; RESULTS]; OPS],
}

impl CommandCounters {
    /// Counts one answer.
    pub(crate) fn count(&self, op: Option<Op>, result: Result<(), CommandErrorCode>) {
        let o = op
            .and_then(|op| Op::ALL.iter().position(|x| *x == op))
            .map_or(OPS - 1, |i| i);
        let r = match result {
            Ok(()) => 0,
            Err(code) => CommandErrorCode::ALL
                .iter()
                .position(|c| *c == code)
                .map_or(0, |i| i + 1),
        };
        self.counts[o][r].fetch_add(1, Relaxed);
    }

    /// Every non-zero count as `(op, result, n)`, e.g. `("3", "ok", 2)`.
    #[must_use]
    pub(crate) fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        const OP_LABELS: [&str; OPS] = ["3", "4", "8", "31", "other"];
        let mut out = Vec::new();
        for (o, row) in self.counts.iter().enumerate() {
            for (r, n) in row.iter().enumerate() {
                let n = n.load(Relaxed);
                if n > 0 {
                    let result = if r == 0 {
                        "ok"
                    } else {
                        CommandErrorCode::ALL[r - 1].as_str()
                    };
                    out.push((OP_LABELS[o], result, n));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_cells() {
        let c = CommandCounters::default();
        c.count(Some(Op::Presence), Ok(()));
        c.count(Some(Op::Presence), Ok(()));
        c.count(
            Some(Op::SoundboardSounds),
            Err(CommandErrorCode::RateLimited),
        );
        c.count(None, Err(CommandErrorCode::BadRequest));
        assert_eq!(
            c.snapshot(),
            [
                ("3", "ok", 2),
                ("31", "rate_limited", 1),
                ("other", "bad_request", 1)
            ]
        );
    }
}
