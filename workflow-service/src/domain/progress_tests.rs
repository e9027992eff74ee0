use super::*;
use crate::domain::{WorkflowDraft, validate_workflow};

fn step(name: &str, status: StepStatus) -> StepState<'_> {
    StepState {
        name,
        status,
        attempt: 0,
        error: "",
        approval_id: "",
    }
}

fn approval(status: ApprovalStatus) -> ApprovalState<'static> {
    ApprovalState {
        status,
        decided_by: "user:bob",
        comment: "not today",
        expires_at: "2026-01-01T00:00:00Z",
    }
}

fn no_approvals(_: &str) -> Option<ApprovalState<'static>> {
    None
}

fn set(names: &[&str]) -> HashSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn entry_covers_every_workflow_status() {
    for &status in WorkflowStatus::ALL {
        for cancel in [false, true] {
            let expected = match status {
                s if s.is_terminal() => Entry::Finished,
                WorkflowStatus::RollingBack => Entry::ContinueRollback,
                // Steps may be in flight: the driver sees the request itself.
                WorkflowStatus::Running => Entry::Resume,
                WorkflowStatus::Pending | WorkflowStatus::Paused if cancel => Entry::SettleCancel,
                WorkflowStatus::Pending => Entry::Start,
                WorkflowStatus::Paused => Entry::Resume,
                other => unreachable!("{other} is covered above"),
            };
            assert_eq!(entry(status, cancel), expected, "{status}, cancel {cancel}");
        }
    }
}

#[test]
fn progress_places_every_step_status() {
    for &status in StepStatus::ALL {
        let mut row = step("s", status);
        row.error = "boom";
        row.attempt = 2;
        let p = progress(&[row], no_approvals);
        let started = p.started.contains("s");
        match status {
            StepStatus::Pending => assert_eq!(p, Progress::default(), "nothing happened yet"),
            StepStatus::Succeeded => {
                assert!(p.done.contains("s") && started);
                assert!(p.failed.is_none());
            }
            StepStatus::Running => {
                assert_eq!(p.interrupted.get("s"), Some(&2), "repeats its attempt");
                assert!(!started, "scheduled again");
            }
            StepStatus::Failed
            | StepStatus::Denied
            | StepStatus::Rejected
            | StepStatus::Expired => {
                assert_eq!(p.failed, Some(("s".into(), "boom".into())));
                assert!(started && p.done.is_empty());
            }
            StepStatus::AwaitingApproval => {
                assert!(p.orphaned, "no approval found: ask again");
                assert!(!started);
            }
            StepStatus::Skipped
            | StepStatus::Compensating
            | StepStatus::Compensated
            | StepStatus::CompensationFailed => {
                assert!(started && p.done.is_empty() && p.failed.is_none());
            }
        }
    }
}

#[test]
fn a_waiting_step_follows_its_approval() {
    for &status in ApprovalStatus::ALL {
        let mut row = step("gate", StepStatus::AwaitingApproval);
        row.approval_id = "ap1";
        let p = progress(&[row], |id| (id == "ap1").then(|| approval(status)));
        match status {
            ApprovalStatus::Approved => {
                assert_eq!(p.approved.get("gate").map(String::as_str), Some("ap1"));
                assert!(!p.started.contains("gate") && p.actionable());
            }
            ApprovalStatus::Pending => {
                assert!(p.waiting && p.started.contains("gate"));
                assert!(!p.actionable(), "a paused workflow stays paused");
            }
            ApprovalStatus::Rejected => {
                assert_eq!(
                    p.settled,
                    vec![(
                        "gate".into(),
                        StepStatus::Rejected,
                        "approval ap1 rejected by user:bob: not today".into()
                    )]
                );
                assert!(p.actionable());
            }
            ApprovalStatus::Expired => {
                assert_eq!(p.settled[0].1, StepStatus::Expired);
                assert!(p.settled[0].2.contains("expired at 2026-01-01T00:00:00Z"));
            }
            ApprovalStatus::Void => assert!(p.orphaned && p.actionable()),
        }
    }
}

#[test]
fn an_interrupted_approved_step_keeps_its_approval_and_others_do_not() {
    let mut approved = step("a", StepStatus::Running);
    approved.approval_id = "ap1";
    let mut voided = step("b", StepStatus::Running);
    voided.approval_id = "ap2";
    let p = progress(&[approved, voided], |id| match id {
        "ap1" => Some(approval(ApprovalStatus::Approved)),
        "ap2" => Some(approval(ApprovalStatus::Void)),
        _ => None,
    });
    assert_eq!(p.approved.keys().collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(p.interrupted.len(), 2);
    assert_eq!(p.interrupted["a"], 1, "attempt 0 counts as the first");
}

#[test]
fn the_first_failure_is_kept() {
    let mut first = step("first", StepStatus::Denied);
    first.error = "policy denied";
    let mut second = step("second", StepStatus::Failed);
    second.error = "later";
    let p = progress(&[first, second], no_approvals);
    assert_eq!(p.failed, Some(("first".into(), "policy denied".into())));
}

fn spec(yaml: &str) -> Vec<StepSpec> {
    validate_workflow(&WorkflowDraft::from_text(yaml).expect("yaml"))
        .expect("valid")
        .steps
}

#[test]
fn ready_steps_respect_dependencies_capacity_and_pauses() {
    let steps = spec(
        "name: w\nsteps:\n  - {name: a, capability: x.y}\n  - {name: b, capability: x.y}\n  - {name: c, capability: x.y, depends_on: [a, b]}\n",
    );
    let names = |ready: Vec<&StepSpec>| ready.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    let none = HashMap::new();
    assert_eq!(
        names(ready(&steps, &set(&[]), &set(&[]), false, &none, 8)),
        ["a", "b"]
    );
    assert_eq!(
        names(ready(&steps, &set(&[]), &set(&[]), false, &none, 1)),
        ["a"]
    );
    assert!(ready(&steps, &set(&["a", "b"]), &set(&["a"]), false, &none, 8).is_empty());
    assert_eq!(
        names(ready(
            &steps,
            &set(&["a", "b"]),
            &set(&["a", "b"]),
            false,
            &none,
            8
        )),
        ["c"]
    );
    // Paused: only approved steps start.
    assert!(ready(&steps, &set(&[]), &set(&[]), true, &none, 8).is_empty());
    let approved = HashMap::from([("b".to_owned(), "ap".to_owned())]);
    assert_eq!(
        names(ready(&steps, &set(&[]), &set(&[]), true, &approved, 8)),
        ["b"]
    );
}

#[test]
fn deferred_writes_wait_for_a_commit_that_carries_them() {
    // A step starts now: its first commit carries what is deferred.
    assert!(!must_flush(true, 1, false));
    // Nothing starts while others run: commit now, not after them.
    assert!(must_flush(false, 1, false));
    // Nothing in flight: the final status carries them.
    assert!(!must_flush(false, 0, false));
    // The stored steps are about to be read.
    assert!(must_flush(false, 0, true));
    assert!(must_flush(true, 3, true));
}

#[test]
fn endings() {
    use Ending::*;
    // A failure wins over a cancellation; nothing completed, nothing to undo.
    assert_eq!(
        ending(true, Some(true), true, true, false),
        Fail { rollback: true }
    );
    assert_eq!(
        ending(true, None, false, true, false),
        Fail { rollback: false }
    );
    assert_eq!(
        ending(true, None, true, false, true),
        Fail { rollback: false }
    );
    assert_eq!(
        ending(false, Some(true), true, false, false),
        Cancel { rollback: true }
    );
    assert_eq!(
        ending(false, Some(true), false, true, false),
        Cancel { rollback: false }
    );
    assert_eq!(
        ending(false, Some(false), true, true, true),
        Cancel { rollback: false }
    );
    assert_eq!(ending(false, None, true, true, true), Pause);
    assert_eq!(ending(false, None, true, true, false), Complete);
    assert_eq!(ending(false, None, false, false, false), Complete);
}
