//! The pages, one module per area; the helpers they share.

use airt_proto::policy::v1 as policy;
use airt_proto::workflow::v1 as pb;

use crate::error::ConsoleError;
use crate::view::short;

pub mod approvals;
pub mod catalogue;
pub mod workflows;

/// The longest id, token or name taken from a URL or a form.
const MAX_ID_BYTES: usize = 256;

/// `value` if it is a plausible id: at most 256 bytes of visible ASCII.
pub fn bounded_id<'a>(value: &'a str, what: &str) -> Result<&'a str, ConsoleError> {
    if value.len() > MAX_ID_BYTES || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConsoleError::BadRequest(format!(
            "the {what} must be at most {MAX_ID_BYTES} visible ASCII characters"
        )));
    }
    Ok(value)
}

/// A status filter from a query (`ALL`, or a status name without its
/// prefix; empty means `default`): the name shown and the value sent.
pub fn status_filter<'a>(
    query: &'a str,
    default: &'a str,
    lookup: impl Fn(&str) -> Option<i32>,
) -> Result<(&'a str, i32), ConsoleError> {
    let name = if query.is_empty() { default } else { query };
    if name == "ALL" {
        return Ok((name, 0));
    }
    let known = name.len() <= 32 && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    known
        .then(|| lookup(name))
        .flatten()
        .map(|value| (name, value))
        .ok_or_else(|| ConsoleError::BadRequest("unknown status filter".into()))
}

pub fn approval_status(value: i32) -> String {
    pb::ApprovalStatus::try_from(value)
        .map(|s| short(s.as_str_name(), "APPROVAL_STATUS_"))
        .unwrap_or_default()
}

pub fn workflow_status(value: i32) -> String {
    pb::WorkflowStatus::try_from(value)
        .map(|s| short(s.as_str_name(), "WORKFLOW_STATUS_"))
        .unwrap_or_default()
}

pub fn step_status(value: i32) -> String {
    pb::StepStatus::try_from(value)
        .map(|s| short(s.as_str_name(), "STEP_STATUS_"))
        .unwrap_or_default()
}

/// `REQUIRE_APPROVAL by rule payments-need-finance: reason (revision r3)`.
pub fn decision_text(decision: Option<&policy::DecisionRecord>) -> String {
    let Some(d) = decision else {
        return "-".into();
    };
    let name = policy::Decision::try_from(d.decision)
        .map(|v| short(v.as_str_name(), "DECISION_"))
        .unwrap_or_default();
    let rule = if d.rule_id.is_empty() {
        "the default".to_owned()
    } else {
        format!("rule {}", d.rule_id)
    };
    let mut text = format!("{name} by {rule}");
    if !d.reason.is_empty() {
        text.push_str(&format!(": {}", d.reason));
    }
    if d.escalated {
        text.push_str(" (escalated for high risk)");
    }
    if !d.policy_revision.is_empty() {
        text.push_str(&format!(" · policy {}", d.policy_revision));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_visible() {
        assert!(bounded_id("01J8-abc", "id").is_ok());
        assert!(bounded_id("", "id").is_ok());
        assert!(bounded_id("a b", "id").is_err());
        assert!(bounded_id("a\u{202e}b", "id").is_err());
        assert!(bounded_id(&"a".repeat(257), "id").is_err());
    }
}
