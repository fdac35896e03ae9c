//! The job state machine.

use std::fmt;
use std::str::FromStr;

/// Where a job is in its life.
///
/// ```text
///   CREATED ──start──▶ QUEUED ──▶ RUNNING ──▶ SUCCEEDED | PARTIALLY_SUCCEEDED
///      │                 │  ▲        │   └──▶ FAILED | STOPPED
///      └──stop──▶ STOPPED ◀┘  └──────┘ requeued after its process died
/// ```
///
/// Terminal states have no way out: a finished job is never run again.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum JobStatus {
    /// Recorded, not yet asked to run.
    Created,
    /// Waiting for a runner slot.
    Queued,
    /// Being run.
    Running,
    /// Every row was read and every surviving record written.
    Succeeded,
    /// Finished, but some rows or pieces failed.
    PartiallySucceeded,
    /// Could not finish; the reason says why. Records already written stay.
    Failed,
    /// Stopped on request. Records already written stay.
    Stopped,
}

impl JobStatus {
    /// Every status, in the order of the diagram.
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Created,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::PartiallySucceeded,
        JobStatus::Failed,
        JobStatus::Stopped,
    ];

    /// The name used in the store and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Created => "CREATED",
            JobStatus::Queued => "QUEUED",
            JobStatus::Running => "RUNNING",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::PartiallySucceeded => "PARTIALLY_SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::Stopped => "STOPPED",
        }
    }

    /// Whether nothing more will happen to the job.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded
                | JobStatus::PartiallySucceeded
                | JobStatus::Failed
                | JobStatus::Stopped
        )
    }

    /// Whether a job may go from `self` to `to`.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (Created, Queued | Stopped)
                | (Queued, Running | Stopped | Failed)
                | (
                    Running,
                    Queued | Succeeded | PartiallySucceeded | Failed | Stopped
                )
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`JobStatus::ALL`].
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("unknown job status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<JobStatus, UnknownStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Whose fault a failed job was.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum FailureKind {
    /// The input or the request: a missing column, no rows that parse, a
    /// file that does not open under its key.
    Validation,
    /// Ours: the store, the disk, the machine.
    Internal,
}

impl FailureKind {
    /// The name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Validation => "VALIDATION_FAILURE",
            FailureKind::Internal => "INTERNAL_FAILURE",
        }
    }

    /// The kind a stored name stands for.
    pub fn from_name(s: &str) -> Option<FailureKind> {
        match s {
            "VALIDATION_FAILURE" => Some(FailureKind::Validation),
            "INTERNAL_FAILURE" => Some(FailureKind::Internal),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::{self, *};

    #[test]
    fn transitions_follow_the_diagram() {
        let allowed: &[(JobStatus, JobStatus)] = &[
            (Created, Queued),
            (Created, Stopped),
            (Queued, Running),
            (Queued, Stopped),
            (Queued, Failed),
            (Running, Queued),
            (Running, Succeeded),
            (Running, PartiallySucceeded),
            (Running, Failed),
            (Running, Stopped),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            if from.is_terminal() {
                assert!(JobStatus::ALL.iter().all(|&to| !from.can_become(to)));
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
        }
        assert!("IN_PROGRESS".parse::<JobStatus>().is_err());
    }
}
