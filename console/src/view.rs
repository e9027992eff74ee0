//! The page frame and the small pieces every page shows (badges, times,
//! JSON). Semantic HTML that reads on a phone and without scripts; maud
//! escapes every value it prints.

use std::time::{SystemTime, UNIX_EPOCH};

use airt_proto::common::v1::RiskLevel;
use maud::{DOCTYPE, Markup, html};

use crate::user::User;

/// The style sheet, served at `/static/console.css`.
pub const STYLE: &str = r#"
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#59636e;--line:#d0d7de;--accent:#0a58ca}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#30363d;--accent:#4493f8}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;padding:.75rem 1rem;border-bottom:1px solid var(--line)}
header nav{display:flex;flex-wrap:wrap;gap:.25rem 1rem}header .who{margin-left:auto;color:var(--muted);font-size:.9rem}
main{padding:1rem;max-width:72rem;margin:0 auto}a{color:var(--accent)}h1{overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
.scroll{overflow-x:auto}pre{white-space:pre-wrap;word-break:break-word;background:rgba(127,127,127,.12);padding:.75rem;border-radius:6px}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85rem;font-weight:600;border:1px solid currentColor}
.risk-LOW{color:#1a7f37}.risk-MEDIUM{color:#9a6700}.risk-HIGH{color:#bc4c00}.risk-CRITICAL{color:#cf222e}
.dev{background:#9a6700;color:#fff;padding:.25rem 1rem;text-align:center;font-weight:600}
.problem{border-left:4px solid #cf222e;padding:.5rem 1rem}
form.inline{display:inline}label{display:block;margin:.5rem 0 .25rem;font-weight:600}
input[type=text],input[type=password],textarea,select{width:100%;max-width:40rem;padding:.5rem;font:inherit;color:inherit;background:var(--bg);border:1px solid var(--line);border-radius:6px}
button{font:inherit;padding:.5rem 1rem;margin:.5rem .5rem .5rem 0;border-radius:6px;border:1px solid var(--line);cursor:pointer;min-height:44px}
button.approve{background:#1a7f37;color:#fff}button.reject{background:#cf222e;color:#fff}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{color:var(--muted)}dd{margin:0;word-break:break-word}
.muted{color:var(--muted)}ol.timeline{padding-left:1.25rem}ol.timeline code{word-break:break-all}
select{width:auto}td.inputs{max-width:24rem;font-size:.85rem;word-break:break-all}
.filters{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end}.filters label{margin:0}
@media (max-width:40rem){dl{grid-template-columns:1fr}dd{margin-bottom:.5rem}h1{font-size:1.4rem}}
"#;

/// A whole page: header with navigation and the signed-in user (when
/// there is one), then `body`.
pub fn page(title: &str, user: Option<&User>, development: bool, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · AI-First Runtime" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                @if development {
                    div.dev role="note" { "Development mode: identities are not verified." }
                }
                header {
                    strong { "AI-First Runtime" }
                    @if let Some(user) = user {
                        nav aria-label="Main" {
                            a href="/" { "Approvals" }
                            a href="/workflows" { "Workflows" }
                            a href="/capabilities" { "Capabilities" }
                            a href="/policy" { "Policy" }
                            a href="/audit" { "Audit" }
                        }
                        span.who {
                            "Signed in as " strong data-testid="signed-in-as" { (user.identity.principal()) }
                            @if !user.identity.roles().is_empty() { " (" (user.identity.roles()) ")" }
                            form.inline method="post" action="/signout" {
                                (csrf(&user.csrf))
                                button type="submit" data-testid="signout" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The page of a refusal: what failed, the gRPC code and reason.
pub fn problem(title: &str, code: &str, reason: Option<&str>, message: &str) -> Markup {
    page(
        title,
        None,
        false,
        &html! {
            div.problem role="alert" data-testid="problem" {
                p {
                    strong data-testid="problem-code" { (code) }
                    @if let Some(reason) = reason {
                        " · " strong data-testid="problem-reason" { (reason) }
                    }
                }
                pre data-testid="problem-message" { (message) }
            }
            p { a href="/" { "Approvals" } " · " a href="/workflows" { "Workflows" } }
        },
    )
}

/// An enum value's name without its prefix (`RISK_LEVEL_HIGH` → `HIGH`).
pub fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

/// The risk level as a coloured badge with its name.
pub fn risk(level: i32) -> Markup {
    let name = RiskLevel::try_from(level)
        .map(|l| short(l.as_str_name(), "RISK_LEVEL_"))
        .unwrap_or_else(|_| "UNKNOWN".into());
    html! { span class={ "badge risk-" (name) } data-testid="risk" { (name) } }
}

/// A timestamp as RFC 3339 (UTC), `-` when unset.
pub fn time(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map_or_else(|| "-".into(), ToString::to_string)
}

/// How long until `ts` (`in 23m`, `2h ago`), from this server's clock.
pub fn relative(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = ts else {
        return String::new();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let delta = ts.seconds.saturating_sub(now);
    let amount = |s: i64| match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    };
    if delta >= 0 {
        format!("in {}", amount(delta))
    } else {
        format!("{} ago", amount(delta.saturating_neg()))
    }
}

/// A JSON value pretty-printed.
pub fn json(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre { (text) } }
}

/// A principal as `type:id`, `-` when empty.
pub fn principal(p: Option<&airt_proto::common::v1::Principal>) -> String {
    p.filter(|p| !p.id.is_empty())
        .map_or_else(|| "-".into(), |p| format!("{}:{}", p.r#type, p.id))
}

/// A hidden CSRF field for a form.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let user = User::for_tests(crate::session::Identity::Development {
            principal: "user:<b>".into(),
            roles: "\"r\"".into(),
        });
        let page = page(
            "<script>x</script>",
            Some(&user),
            true,
            &json(&serde_json::json!({"k": "</pre><script>"})),
        )
        .into_string();
        assert!(!page.contains("<script>x"), "{page}");
        assert!(!page.contains("user:<b>"));
        assert!(!page.contains("</pre><script>"));
        assert!(page.contains("&lt;script&gt;"));
    }

    #[test]
    fn relative_times_read_both_ways() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let at = |s| prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        };
        assert_eq!(relative(Some(&at(now + 125))), "in 2m");
        assert!(relative(Some(&at(now - 7300))).ends_with(" ago"));
        assert_eq!(relative(None), "");
        assert!(
            relative(Some(&at(i64::MIN))).ends_with(" ago"),
            "no overflow on extreme times"
        );
    }
}
