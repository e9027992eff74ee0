//! Every example policy under `examples/policies/` with a `NAME.tests.yaml`
//! beside it passes its cases, and lints clean against the capabilities the
//! project ships (the built-in specs and `examples/capabilities/`), with
//! their parameter types.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use policy_service::domain::condition::lint::ParamType;
use policy_service::domain::testing::{KnownCapability, lint, parse_test_cases, run_tests};
use policy_service::domain::{CompiledPolicySet, parse_policy_set};
use serde::Deserialize;

#[derive(Deserialize)]
struct SpecParameters {
    id: String,
    #[serde(default)]
    parameters: Vec<Parameter>,
}

#[derive(Deserialize)]
struct Parameter {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn known_capabilities() -> Vec<KnownCapability> {
    let mut known = Vec::new();
    for dir in ["capabilities/src/specs", "examples/capabilities"] {
        for file in yaml_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).expect("spec");
            let spec: SpecParameters =
                serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let parameters: HashMap<String, ParamType> = spec
                .parameters
                .into_iter()
                .map(|p| {
                    let kind = ParamType::parse(&p.kind)
                        .unwrap_or_else(|| panic!("{}: type {}", file.display(), p.kind));
                    (p.name, kind)
                })
                .collect();
            known.push(KnownCapability {
                id: spec.id,
                parameters: Some(parameters),
            });
        }
    }
    known
}

#[test]
fn example_policies_pass_their_tests_and_lint_clean() {
    let known = known_capabilities();
    assert!(known.len() > 20, "the built-in specs were found");
    let mut checked = Vec::new();
    for tests in yaml_files(&root().join("examples/policies")) {
        let name = tests.file_name().and_then(|n| n.to_str()).expect("name");
        let Some(stem) = name.strip_suffix(".tests.yaml") else {
            continue;
        };
        let policy = tests.with_file_name(format!("{stem}.yaml"));
        let source = std::fs::read_to_string(&policy).expect("policy beside its tests");
        let set = CompiledPolicySet::compile(
            parse_policy_set(&source).unwrap_or_else(|e| panic!("{stem}: {e}")),
        );
        let cases = parse_test_cases(
            &std::fs::read_to_string(&tests).expect("tests"),
            jiff::Timestamp::now(),
        )
        .unwrap_or_else(|e| panic!("{stem}: {e:?}"));
        let report = run_tests(&set, &cases, &known);
        let failures: Vec<String> = report
            .results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.name, r.message))
            .collect();
        assert!(failures.is_empty(), "{stem}: {failures:#?}");
        let findings = lint(set.rules(), &known);
        assert!(findings.is_empty(), "{stem}: {findings:#?}");
        // Every rule decides at least one case.
        let untested: Vec<&str> = report
            .coverage
            .iter()
            .filter(|(rule, hits)| *hits == 0 && rule != "default")
            .map(|(rule, _)| rule.as_str())
            .collect();
        assert!(
            untested.is_empty(),
            "{stem}: rules without a case: {untested:?}"
        );
        checked.push(stem.to_owned());
    }
    for expected in [
        "default",
        "email_budget",
        "fetch_allowlist",
        "finance_refunds",
        "prod_deletes",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} was not checked: {checked:?}"
        );
    }
}
