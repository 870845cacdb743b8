//! Status lifecycles of assistance cases and urgent reports.
//!
//! A transition is checked where the write happens (on the device, or in the office), and again by
//! the relay, change by change, from a status the change's author saw (`record::check_move`). Two
//! devices may still move a case concurrently to different statuses; Automerge keeps both and the
//! record shows up in `conflicts()` for office staff to settle.

use serde::{Deserialize, Serialize};

/// 帮扶个案状态: draft → open → assessing → in_progress → pending_review → closed, with referred,
/// suspended and reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    #[default]
    Draft,
    Open,
    Assessing,
    InProgress,
    PendingReview,
    Closed,
    Referred,
    Suspended,
    Reopened,
}

impl CaseStatus {
    pub const ALL: [CaseStatus; 9] = [
        CaseStatus::Draft,
        CaseStatus::Open,
        CaseStatus::Assessing,
        CaseStatus::InProgress,
        CaseStatus::PendingReview,
        CaseStatus::Closed,
        CaseStatus::Referred,
        CaseStatus::Suspended,
        CaseStatus::Reopened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Draft => "draft",
            CaseStatus::Open => "open",
            CaseStatus::Assessing => "assessing",
            CaseStatus::InProgress => "in_progress",
            CaseStatus::PendingReview => "pending_review",
            CaseStatus::Closed => "closed",
            CaseStatus::Referred => "referred",
            CaseStatus::Suspended => "suspended",
            CaseStatus::Reopened => "reopened",
        }
    }

    /// Whether a case in this status still needs work ("open cases" in lists and reports).
    pub fn is_active(self) -> bool {
        !matches!(self, CaseStatus::Draft | CaseStatus::Closed)
    }

    /// The statuses a case may move to from `self`. Staying put is always allowed.
    pub fn successors(self) -> &'static [CaseStatus] {
        use CaseStatus::*;
        match self {
            Draft => &[Open, Closed],
            Open => &[Assessing, InProgress, Referred, Suspended, Closed],
            Assessing => &[InProgress, Referred, Suspended, Closed],
            InProgress => &[PendingReview, Referred, Suspended],
            PendingReview => &[Closed, InProgress],
            Referred => &[InProgress, Closed],
            Suspended => &[InProgress, Closed],
            Closed => &[Reopened],
            Reopened => &[Assessing, InProgress, Closed],
        }
    }

    pub fn can_move_to(self, to: CaseStatus) -> bool {
        self == to || self.successors().contains(&to)
    }
}

/// 社情民意状态: draft → queued (on the device) → received → acknowledged → escalated → closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    #[default]
    Draft,
    Queued,
    Received,
    Acknowledged,
    Escalated,
    Closed,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Draft => "draft",
            ReportStatus::Queued => "queued",
            ReportStatus::Received => "received",
            ReportStatus::Acknowledged => "acknowledged",
            ReportStatus::Escalated => "escalated",
            ReportStatus::Closed => "closed",
        }
    }

    pub fn successors(self) -> &'static [ReportStatus] {
        use ReportStatus::*;
        match self {
            Draft => &[Queued, Received],
            Queued => &[Received],
            Received => &[Acknowledged, Escalated, Closed],
            Acknowledged => &[Escalated, Closed],
            Escalated => &[Acknowledged, Closed],
            Closed => &[],
        }
    }

    pub fn can_move_to(self, to: ReportStatus) -> bool {
        self == to || self.successors().contains(&to)
    }

    pub fn is_active(self) -> bool {
        self != ReportStatus::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_closed_case_cannot_go_back_to_work_without_reopen() {
        assert!(!CaseStatus::Closed.can_move_to(CaseStatus::InProgress));
        assert!(CaseStatus::Closed.can_move_to(CaseStatus::Reopened));
        assert!(CaseStatus::Reopened.can_move_to(CaseStatus::InProgress));
    }

    #[test]
    fn test_case_happy_path_is_allowed() {
        use CaseStatus::*;
        let path = [Draft, Open, Assessing, InProgress, PendingReview, Closed];
        for pair in path.windows(2) {
            assert!(
                pair[0].can_move_to(pair[1]),
                "{:?} -> {:?}",
                pair[0],
                pair[1]
            );
        }
        assert!(!Draft.can_move_to(InProgress));
        assert!(!Open.can_move_to(PendingReview));
    }

    #[test]
    fn test_every_case_status_reaches_closed() {
        for status in CaseStatus::ALL {
            let mut seen = vec![status];
            let mut frontier = vec![status];
            while let Some(s) = frontier.pop() {
                for next in s.successors() {
                    if !seen.contains(next) {
                        seen.push(*next);
                        frontier.push(*next);
                    }
                }
            }
            assert!(
                seen.contains(&CaseStatus::Closed),
                "{status:?} never closes"
            );
        }
    }

    #[test]
    fn test_report_cannot_leave_closed() {
        assert!(!ReportStatus::Closed.can_move_to(ReportStatus::Escalated));
        assert!(ReportStatus::Received.can_move_to(ReportStatus::Escalated));
        assert!(!ReportStatus::Draft.can_move_to(ReportStatus::Closed));
    }
}
