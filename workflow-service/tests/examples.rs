//! Every workflow in examples/workflows/ parses and validates.

use workflow_service::domain::{WorkflowDraft, validate_workflow};

#[test]
fn example_workflows_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/workflows");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/workflows") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read");
            let draft = WorkflowDraft::from_text(&text)
                .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.description));
            let spec =
                validate_workflow(&draft).unwrap_or_else(|v| panic!("{}: {v:?}", path.display()));
            assert!(!spec.steps.is_empty());
            checked += 1;
        }
    }
    assert!(checked >= 2, "found {checked} examples");
}
