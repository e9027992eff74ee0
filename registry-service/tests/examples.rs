//! Every capability under `examples/capabilities/` passes the registry's
//! validation, the Risk Consistency Check included.

use registry_service::domain::spec::SpecDraft;
use registry_service::domain::validation::validate;

#[test]
fn example_capabilities_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/capabilities");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/capabilities") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let draft =
            SpecDraft::from_text(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let (spec, _) = validate(&draft).unwrap_or_else(|e| panic!("{}: {e:#?}", path.display()));
        assert_eq!(
            path.file_stem().and_then(|s| s.to_str()),
            Some(spec.id.as_str()),
            "a file is named after its capability"
        );
        checked += 1;
    }
    assert!(checked >= 4, "{checked} examples");
}
