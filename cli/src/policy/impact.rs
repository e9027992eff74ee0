//! `airt policy impact -f candidate.yaml --since 168h`: what the candidate
//! would have decided differently on the logged decisions of the window.
//! Exits non-zero when a change newly ALLOWs a HIGH or CRITICAL action, so
//! it can gate a policy change in CI.

use std::process::ExitCode;

use airt_proto::policy::v1 as pb;

use super::{Client, decision_name, read};
use crate::client::{ConnectionArgs, describe};

/// `90s`, `30m`, `168h`, `7d`.
pub fn parse_window(text: &str) -> Result<prost_types::Duration, String> {
    let bad = || format!("{text:?}: expected a duration like 30m, 168h or 7d");
    let unit = text.chars().last().ok_or_else(bad)?;
    let number: i64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    Ok(prost_types::Duration {
        seconds: number.checked_mul(scale).ok_or_else(bad)?,
        nanos: 0,
    })
}

fn risk_name(value: i32) -> &'static str {
    airt_proto::common::v1::RiskLevel::try_from(value)
        .map(|r| r.as_str_name().trim_start_matches("RISK_LEVEL_"))
        .unwrap_or("UNSPECIFIED")
}

fn print(report: &pb::ImpactReport) {
    let since = report
        .since
        .as_ref()
        .map_or_else(String::new, ToString::to_string);
    out!(
        "replayed {} decision(s) since {since}{}: {} would change, {} newly allow a HIGH or CRITICAL action; {} keep their decision under another rule",
        report.replayed,
        if report.truncated { " (truncated)" } else { "" },
        report.changed,
        report.flagged,
        report.rule_only_changes
    );
    for group in &report.groups {
        out!(
            "{:<8} {} -> {}  rule {} -> {}  {} decision(s)",
            if group.flagged { "FLAGGED" } else { "changed" },
            decision_name(group.old_decision),
            decision_name(group.new_decision),
            group.old_rule_id,
            group.new_rule_id,
            group.count
        );
        for example in &group.examples {
            let when = example
                .decide_time
                .as_ref()
                .map_or_else(String::new, ToString::to_string);
            let step = if example.workflow_id.is_empty() {
                String::new()
            } else {
                format!(" {}/{}", example.workflow_id, example.step_name)
            };
            out!(
                "    #{} {when} {} {} {}{step}",
                example.sequence,
                example.principal,
                example.capability_id,
                risk_name(example.risk_level)
            );
        }
    }
}

pub async fn impact(
    args: &ConnectionArgs,
    client: &mut Client,
    file: &std::path::Path,
    since: prost_types::Duration,
    max: i32,
) -> anyhow::Result<ExitCode> {
    let answer = client
        .test_policy_set(pb::TestPolicySetRequest {
            target: Some(pb::test_policy_set_request::Target::SourceYaml(read(file)?)),
            impact_since: Some(since),
            impact_max_decisions: max,
            ..Default::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!(describe(&status)))?
        .into_inner();
    let report = answer.impact.unwrap_or_default();
    if args.output == crate::output::Format::Text {
        print(&report);
    } else {
        crate::output::print(args.output, &crate::output::to_json(&report)?)?;
    }
    Ok(if report.flagged > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse() {
        assert_eq!(parse_window("168h").map(|d| d.seconds), Ok(604_800));
        assert_eq!(parse_window("7d").map(|d| d.seconds), Ok(604_800));
        assert!(
            parse_window("7w").is_err() && parse_window("").is_err() && parse_window("h").is_err()
        );
    }
}
