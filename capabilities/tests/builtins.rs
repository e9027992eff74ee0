//! The standard capabilities: behaviour, exact undo (also after a simulated
//! restart), typed errors, input validation, and the sandbox escape suite.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use airt_capabilities::{
    Catalogue, CatalogueConfig, ErrorKind, Execution, ExecutionContext, HandlerError, Workspace,
};
use serde_json::{Value, json};

struct Fixture {
    /// Holds the workspace root and, beside it, an "outside" directory.
    _parent: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
    catalogue: Catalogue,
    workspace: Arc<Workspace>,
}

impl Fixture {
    fn new() -> Self {
        let parent = tempfile::tempdir().expect("tempdir");
        let root = parent.path().join("ws");
        // A sibling sharing the root's prefix, and a secret outside.
        let outside = parent.path().join("ws-evil");
        std::fs::create_dir_all(&outside).expect("outside");
        std::fs::write(outside.join("secret.txt"), b"top secret").expect("secret");
        let workspace = Arc::new(Workspace::open(&root).expect("workspace"));
        let catalogue = Catalogue::new(&CatalogueConfig {
            env_allow_list: vec!["AIRT_TEST_ALLOWED".into()],
            ..Default::default()
        });
        Self {
            _parent: parent,
            root,
            outside,
            catalogue,
            workspace,
        }
    }

    /// The same directories opened afresh: what a restarted service sees.
    fn restarted(&self) -> (Catalogue, Arc<Workspace>) {
        (
            Catalogue::new(&CatalogueConfig::default()),
            Arc::new(Workspace::open(&self.root).expect("workspace")),
        )
    }

    fn ctx(&self, step: &str) -> ExecutionContext {
        ExecutionContext::new(
            "wf-1",
            step,
            1,
            Instant::now() + Duration::from_secs(30),
            self.workspace.clone(),
        )
    }

    async fn run(
        &self,
        capability: &str,
        step: &str,
        inputs: Value,
    ) -> Result<Execution, HandlerError> {
        self.catalogue
            .execute(
                capability,
                &self.ctx(step),
                inputs.as_object().expect("object inputs"),
            )
            .await
    }

    async fn ok(&self, capability: &str, step: &str, inputs: Value) -> Execution {
        self.run(capability, step, inputs)
            .await
            .unwrap_or_else(|e| panic!("{capability}: {e}"))
    }

    /// Compensates as a restarted service would: fresh handles, nothing but
    /// the recorded undo data.
    async fn undo(&self, capability: &str, step: &str, execution: &Execution) {
        let undo = execution.undo.as_ref().expect("an undo record");
        let (catalogue, workspace) = self.restarted();
        let ctx = ExecutionContext::new(
            "wf-1",
            step,
            1,
            Instant::now() + Duration::from_secs(5),
            workspace,
        );
        catalogue
            .compensate(capability, &ctx, undo)
            .await
            .unwrap_or_else(|e| panic!("undo {capability}: {e}"));
    }

    fn write(&self, path: &str, bytes: &[u8]) {
        let full = self.root.join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("dirs");
        std::fs::write(full, bytes).expect("write");
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(path)).ok()
    }

    fn secret_untouched(&self) {
        assert_eq!(
            std::fs::read(self.outside.join("secret.txt")).expect("secret"),
            b"top secret"
        );
        let names: Vec<_> = std::fs::read_dir(&self.outside)
            .expect("outside")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "nothing new outside the root: {names:?}");
    }
}

fn kind(result: Result<Execution, HandlerError>) -> ErrorKind {
    let error = result.expect_err("must fail");
    error.kind
}

// ---- reads ---------------------------------------------------------------

#[tokio::test]
async fn reads_return_content_listing_existence_and_hashes() {
    let f = Fixture::new();
    f.write("docs/a.txt", b"abc");
    f.write("docs/b.bin", &[0, 159, 146, 150]);
    let read = f
        .ok("io.fs.read_file", "r", json!({"path": "docs/a.txt"}))
        .await;
    assert_eq!(read.outputs["content"], "abc");
    assert_eq!(
        read.outputs["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!(read.undo.is_none());
    let binary = f
        .ok(
            "io.fs.read_file",
            "r",
            json!({"path": "docs/b.bin", "encoding": "base64"}),
        )
        .await;
    assert_eq!(binary.outputs["content"], "AJ+Slg==");
    assert_eq!(
        kind(
            f.run("io.fs.read_file", "r", json!({"path": "docs/b.bin"}))
                .await
        ),
        ErrorKind::ActionFailed,
        "not UTF-8"
    );
    assert_eq!(
        kind(
            f.run(
                "io.fs.read_file",
                "r",
                json!({"path": "docs/a.txt", "max_bytes": 2})
            )
            .await
        ),
        ErrorKind::ActionFailed
    );
    let missing = f
        .run("io.fs.read_file", "r", json!({"path": "docs/none.txt"}))
        .await
        .expect_err("missing");
    assert_eq!(
        (missing.kind, missing.retryable),
        (ErrorKind::NotFound, false)
    );

    let listing = f.ok("io.fs.list_dir", "l", json!({"path": "docs"})).await;
    assert_eq!(
        listing.outputs["entries"],
        json!([{"name": "a.txt", "type": "file", "size": 3}, {"name": "b.bin", "type": "file", "size": 4}])
    );
    let root = f.ok("io.fs.list_dir", "l", json!({})).await;
    assert_eq!(
        root.outputs["entries"].as_array().map(Vec::len),
        Some(1),
        ".airt is hidden: {}",
        root.outputs
    );

    assert_eq!(
        f.ok("io.fs.exists", "e", json!({"path": "docs"}))
            .await
            .outputs,
        json!({"path": "docs", "exists": true, "type": "dir"})
    );
    assert_eq!(
        f.ok("io.fs.exists", "e", json!({"path": "nope"}))
            .await
            .outputs["exists"],
        false
    );
    let hash = f
        .ok("io.fs.hash_file", "h", json!({"path": "docs/a.txt"}))
        .await;
    assert_eq!(
        (
            hash.outputs["sha256"].as_str(),
            hash.outputs["size"].as_u64()
        ),
        (read.outputs["sha256"].as_str(), Some(3))
    );
}

// ---- writes and their undo -----------------------------------------------

#[tokio::test]
async fn write_file_undo_restores_the_exact_previous_bytes_even_after_a_retry_and_a_restart() {
    let f = Fixture::new();
    let previous: Vec<u8> = (0..=255).collect();
    f.write("data/report.bin", &previous);
    let first = f
        .ok(
            "io.fs.write_file",
            "save",
            json!({"path": "data/report.bin", "content": "new"}),
        )
        .await;
    assert_eq!(first.outputs["created"], false);
    // A retry of the same step (same idempotency key) must not capture "new" as the previous state.
    let retry = f
        .ok(
            "io.fs.write_file",
            "save",
            json!({"path": "data/report.bin", "content": "new"}),
        )
        .await;
    assert_eq!(f.read("data/report.bin").as_deref(), Some(&b"new"[..]));
    assert_eq!(retry.undo, first.undo);

    // Restart: fresh handles, only the recorded undo data.
    let (catalogue, workspace) = f.restarted();
    let ctx = ExecutionContext::new(
        "wf-1",
        "save",
        1,
        Instant::now() + Duration::from_secs(5),
        workspace,
    );
    catalogue
        .compensate("io.fs.write_file", &ctx, first.undo.as_ref().expect("undo"))
        .await
        .expect("undo");
    assert_eq!(f.read("data/report.bin"), Some(previous.clone()));
    // Compensating twice changes nothing more.
    catalogue
        .compensate("io.fs.write_file", &ctx, first.undo.as_ref().expect("undo"))
        .await
        .expect("undo again");
    assert_eq!(f.read("data/report.bin"), Some(previous));
}

#[tokio::test]
async fn write_file_undo_removes_a_created_file_and_the_directories_it_made() {
    let f = Fixture::new();
    let created = f.ok("io.fs.write_file", "w", json!({"path": "a/b/c.txt", "content": "aGk=", "encoding": "base64", "create_dirs": true})).await;
    assert_eq!(f.read("a/b/c.txt").as_deref(), Some(&b"hi"[..]));
    assert_eq!(created.outputs["created"], true);
    f.undo("io.fs.write_file", "w", &created).await;
    assert!(
        !f.root.join("a").exists(),
        "created directories removed too"
    );
    // Without create_dirs a missing parent is an error, not a silent success.
    assert_eq!(
        kind(
            f.run(
                "io.fs.write_file",
                "w2",
                json!({"path": "x/y.txt", "content": "z"})
            )
            .await
        ),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn make_dir_undo_removes_what_it_created() {
    let f = Fixture::new();
    f.write("keep/file.txt", b"k");
    let made = f
        .ok("io.fs.make_dir", "m", json!({"path": "keep/new/deeper"}))
        .await;
    assert!(f.root.join("keep/new/deeper").is_dir());
    f.undo("io.fs.make_dir", "m", &made).await;
    assert!(!f.root.join("keep/new").exists());
    assert_eq!(
        f.read("keep/file.txt").as_deref(),
        Some(&b"k"[..]),
        "pre-existing parent kept"
    );
    let existing = f.ok("io.fs.make_dir", "m2", json!({"path": "keep"})).await;
    assert_eq!(
        (
            existing.outputs["created"].as_bool(),
            existing.undo.is_none()
        ),
        (Some(false), true)
    );
}

#[tokio::test]
async fn move_undo_moves_back_and_restores_an_overwritten_target() {
    let f = Fixture::new();
    f.write("in/a.txt", b"alpha");
    f.write("out/b.txt", b"beta");
    assert_eq!(
        kind(
            f.run(
                "io.fs.move",
                "mv0",
                json!({"from": "in/a.txt", "to": "out/b.txt"})
            )
            .await
        ),
        ErrorKind::AlreadyExists
    );
    let moved = f
        .ok(
            "io.fs.move",
            "mv",
            json!({"from": "in/a.txt", "to": "out/b.txt", "overwrite": true}),
        )
        .await;
    assert_eq!(
        (f.read("in/a.txt"), f.read("out/b.txt").as_deref()),
        (None, Some(&b"alpha"[..]))
    );
    let (catalogue, workspace) = f.restarted();
    let ctx = ExecutionContext::new(
        "wf-1",
        "mv",
        1,
        Instant::now() + Duration::from_secs(5),
        workspace,
    );
    catalogue
        .compensate("io.fs.move", &ctx, moved.undo.as_ref().expect("undo"))
        .await
        .expect("undo");
    assert_eq!(f.read("in/a.txt").as_deref(), Some(&b"alpha"[..]));
    assert_eq!(f.read("out/b.txt").as_deref(), Some(&b"beta"[..]));
    assert_eq!(
        kind(
            f.run("io.fs.move", "mv2", json!({"from": "in/none", "to": "x"}))
                .await
        ),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn copy_undo_deletes_the_copy_or_restores_what_it_replaced() {
    let f = Fixture::new();
    f.write("src.txt", b"source");
    let copied = f
        .ok(
            "io.fs.copy",
            "cp",
            json!({"from": "src.txt", "to": "dst.txt"}),
        )
        .await;
    assert_eq!(f.read("dst.txt").as_deref(), Some(&b"source"[..]));
    f.undo("io.fs.copy", "cp", &copied).await;
    assert_eq!(f.read("dst.txt"), None);
    assert_eq!(f.read("src.txt").as_deref(), Some(&b"source"[..]));

    f.write("old.txt", b"old bytes");
    let replaced = f
        .ok(
            "io.fs.copy",
            "cp2",
            json!({"from": "src.txt", "to": "old.txt", "overwrite": true}),
        )
        .await;
    assert_eq!(f.read("old.txt").as_deref(), Some(&b"source"[..]));
    f.undo("io.fs.copy", "cp2", &replaced).await;
    assert_eq!(f.read("old.txt").as_deref(), Some(&b"old bytes"[..]));
}

#[tokio::test]
async fn delete_moves_to_the_trash_and_undo_restores_files_and_directories() {
    let f = Fixture::new();
    f.write("tree/one.txt", b"1");
    f.write("tree/sub/two.txt", b"2");
    assert_eq!(
        kind(f.run("io.fs.delete", "d0", json!({"path": "tree"})).await),
        ErrorKind::ActionFailed,
        "non-empty without recursive"
    );
    let deleted = f
        .ok(
            "io.fs.delete",
            "d",
            json!({"path": "tree", "recursive": true}),
        )
        .await;
    assert!(!f.root.join("tree").exists());
    let (catalogue, workspace) = f.restarted();
    let ctx = ExecutionContext::new(
        "wf-1",
        "d",
        1,
        Instant::now() + Duration::from_secs(5),
        workspace,
    );
    catalogue
        .compensate("io.fs.delete", &ctx, deleted.undo.as_ref().expect("undo"))
        .await
        .expect("undo");
    assert_eq!(f.read("tree/one.txt").as_deref(), Some(&b"1"[..]));
    assert_eq!(f.read("tree/sub/two.txt").as_deref(), Some(&b"2"[..]));
    assert_eq!(
        kind(
            f.run("io.fs.delete", "d2", json!({"path": "ghost.txt"}))
                .await
        ),
        ErrorKind::NotFound
    );
}

// ---- the sandbox ---------------------------------------------------------

#[tokio::test]
async fn escapes_are_refused_and_nothing_outside_is_touched() {
    let f = Fixture::new();
    f.write("inside.txt", b"in");
    std::os::unix::fs::symlink(&f.outside, f.root.join("link-dir")).expect("symlink dir");
    std::os::unix::fs::symlink(f.outside.join("secret.txt"), f.root.join("link-file"))
        .expect("symlink file");
    let attempts = [
        ("io.fs.read_file", json!({"path": "../ws-evil/secret.txt"})),
        ("io.fs.read_file", json!({"path": "/etc/passwd"})),
        (
            "io.fs.read_file",
            json!({"path": f.outside.join("secret.txt").to_string_lossy()}),
        ),
        ("io.fs.read_file", json!({"path": "link-file"})),
        ("io.fs.read_file", json!({"path": "link-dir/secret.txt"})),
        (
            "io.fs.write_file",
            json!({"path": "link-dir/new.txt", "content": "x"}),
        ),
        (
            "io.fs.write_file",
            json!({"path": "link-file", "content": "overwrite"}),
        ),
        (
            "io.fs.write_file",
            json!({"path": "a/../../ws-evil/x", "content": "x", "create_dirs": true}),
        ),
        ("io.fs.delete", json!({"path": "link-dir/secret.txt"})),
        ("io.fs.delete", json!({"path": "link-file"})),
        (
            "io.fs.move",
            json!({"from": "inside.txt", "to": "link-dir/moved.txt"}),
        ),
        (
            "io.fs.move",
            json!({"from": "link-file", "to": "stolen.txt"}),
        ),
        (
            "io.fs.copy",
            json!({"from": "link-file", "to": "stolen.txt"}),
        ),
        (
            "io.fs.copy",
            json!({"from": "inside.txt", "to": "../ws-evil/copied.txt"}),
        ),
        ("io.fs.list_dir", json!({"path": "link-dir"})),
        ("io.fs.hash_file", json!({"path": "link-file"})),
        (
            "io.fs.write_file",
            json!({"path": ".airt/undo/x", "content": "x"}),
        ),
    ];
    for (capability, inputs) in attempts {
        let error = f
            .run(capability, "escape", inputs.clone())
            .await
            .expect_err(&format!("{capability} {inputs} must be refused"));
        assert_eq!(
            error.kind,
            ErrorKind::SandboxViolation,
            "{capability} {inputs}: {error}"
        );
        assert!(!error.retryable);
    }
    f.secret_untouched();
    assert_eq!(f.read("inside.txt").as_deref(), Some(&b"in"[..]));
    assert!(
        f.root.join("link-file").symlink_metadata().is_ok(),
        "the link itself is not deleted"
    );
}

#[tokio::test]
async fn a_symlink_swapped_in_after_validation_still_cannot_lead_out() {
    let f = Fixture::new();
    f.write("dir/file.txt", b"ok");
    // The path passes validation while `dir` is a real directory...
    let checked = f.workspace.resolve("dir/file.txt").expect("valid path");
    // ...then `dir` is replaced by a symlink to the outside before the I/O.
    std::fs::remove_dir_all(f.root.join("dir")).expect("remove");
    std::os::unix::fs::symlink(&f.outside, f.root.join("dir")).expect("swap");
    std::fs::write(f.outside.join("file.txt"), b"outside").expect("bait");
    assert!(
        f.workspace.dir().read(&checked).is_err(),
        "the directory handle refuses to resolve outside"
    );
    assert!(f.workspace.dir().write(&checked, b"x").is_err());
    assert_eq!(
        std::fs::read(f.outside.join("file.txt")).expect("bait"),
        b"outside"
    );
}

// ---- inputs --------------------------------------------------------------

#[tokio::test]
async fn inputs_are_validated_against_the_parameters() {
    let f = Fixture::new();
    let missing = f
        .run("io.fs.write_file", "v", json!({"path": "a.txt"}))
        .await
        .expect_err("missing content");
    assert_eq!(missing.kind, ErrorKind::InvalidInput);
    assert!(
        missing.message.contains("\"content\""),
        "{}",
        missing.message
    );
    let wrong = f
        .run("io.fs.read_file", "v", json!({"path": 42}))
        .await
        .expect_err("wrong type");
    assert!(
        wrong.message.contains("\"path\" must be of type string"),
        "{}",
        wrong.message
    );
    let unknown = f
        .run("io.fs.exists", "v", json!({"path": "a", "follow": true}))
        .await
        .expect_err("unknown");
    assert!(unknown.message.contains("\"follow\""));
    assert!(f.read("a.txt").is_none(), "nothing executed");
}

// ---- data, text, sys -----------------------------------------------------

#[tokio::test]
async fn data_capabilities_compute() {
    let f = Fixture::new();
    let doc = json!({"customer": {"name": "Acme", "tags": ["a", "b"]}, "secret": 1});
    let found = f
        .ok(
            "data.json.query",
            "q",
            json!({"data": doc, "pointer": "/customer/tags/1"}),
        )
        .await;
    assert_eq!(found.outputs, json!({"found": true, "value": "b"}));
    assert_eq!(
        f.ok(
            "data.json.query",
            "q",
            json!({"data": doc, "pointer": "/nope"})
        )
        .await
        .outputs["found"],
        false
    );
    assert_eq!(
        kind(
            f.run(
                "data.json.query",
                "q",
                json!({"data": doc, "pointer": "customer"})
            )
            .await
        ),
        ErrorKind::InvalidInput
    );
    let transformed = f
        .ok("data.json.transform", "t", json!({"data": doc, "remove": ["/secret"], "set": {"/customer/id": 7}, "pick": ["customer"]}))
        .await;
    assert_eq!(
        transformed.outputs["result"],
        json!({"customer": {"name": "Acme", "tags": ["a", "b"], "id": 7}})
    );
    let hash = f.ok("data.hash.sha256", "h", json!({"data": "abc"})).await;
    assert_eq!(
        hash.outputs["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let encoded = f
        .ok("data.base64.encode", "e", json!({"text": "héllo"}))
        .await
        .outputs["encoded"]
        .clone();
    assert_eq!(
        f.ok("data.base64.decode", "d", json!({"encoded": encoded}))
            .await
            .outputs["text"],
        "héllo"
    );
    assert_eq!(
        kind(
            f.run("data.base64.decode", "d", json!({"encoded": "***"}))
                .await
        ),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn text_capabilities_match_in_linear_time_and_render_strictly() {
    let f = Fixture::new();
    let m = f.ok("text.regex.match", "m", json!({"pattern": r"(?P<user>\w+)@(\w+)\.com", "text": "mail bob@acme.com now", "all": true})).await;
    assert_eq!(m.outputs["matched"], true);
    assert_eq!(m.outputs["matches"][0]["named"]["user"], "bob");
    assert_eq!(m.outputs["matches"][0]["groups"], json!(["bob", "acme"]));
    // A pattern that is catastrophic for backtracking engines completes.
    let evil = f
        .ok(
            "text.regex.match",
            "m",
            json!({"pattern": "(a+)+$", "text": format!("{}b", "a".repeat(50_000))}),
        )
        .await;
    assert_eq!(evil.outputs["matched"], false);
    assert_eq!(
        kind(
            f.run(
                "text.regex.match",
                "m",
                json!({"pattern": "(", "text": "x"})
            )
            .await
        ),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(
            f.run(
                "text.regex.match",
                "m",
                json!({"pattern": "a", "text": "x".repeat(2 * 1024 * 1024)})
            )
            .await
        ),
        ErrorKind::InvalidInput
    );

    let rendered = f.ok("text.template.render", "r", json!({"template": "Hi {{name}}, {{order.count}} items", "values": {"name": "Ann", "order": {"count": 3}}})).await;
    assert_eq!(rendered.outputs["text"], "Hi Ann, 3 items");
    let missing = f
        .run(
            "text.template.render",
            "r",
            json!({"template": "Hi {{nobody}}", "values": {}}),
        )
        .await
        .expect_err("unresolved");
    assert!(missing.message.contains("nobody"));
}

#[tokio::test]
async fn sys_info_capabilities_report_and_guard_the_environment() {
    let f = Fixture::new();
    let time = f.ok("sys.info.get_time", "t", json!({})).await;
    assert!(time.outputs["unix_ms"].as_i64().expect("ms") > 1_700_000_000_000);
    assert!(
        time.outputs["rfc3339"]
            .as_str()
            .expect("text")
            .ends_with('Z')
    );
    assert_eq!(
        f.ok("sys.info.get_os", "o", json!({})).await.outputs["os"],
        std::env::consts::OS
    );
    let allowed = f
        .ok(
            "sys.info.get_env_var",
            "e",
            json!({"name": "AIRT_TEST_ALLOWED"}),
        )
        .await;
    assert_eq!(
        allowed.outputs["present"],
        std::env::var("AIRT_TEST_ALLOWED").is_ok()
    );
    let refused = f
        .run("sys.info.get_env_var", "e", json!({"name": "PATH"}))
        .await
        .expect_err("not allow-listed");
    assert_eq!(refused.kind, ErrorKind::SandboxViolation);
}

#[test]
fn every_builtin_has_a_handler_and_reversible_writers_undo_automatically() {
    let catalogue = Catalogue::new(&CatalogueConfig::default());
    assert_eq!(catalogue.specs().len(), 23);
    for spec in catalogue.specs() {
        let name = spec
            .handler
            .strip_prefix("builtin:")
            .expect("builtin handler");
        assert!(
            catalogue.handler(name).is_some(),
            "{} has no handler",
            spec.id
        );
        let yaml: serde_json::Value = serde_norway::from_str(spec.text).expect("yaml");
        // Reads (READ, and GET over the network) have nothing to undo.
        let changes_things =
            yaml["operation_type"] == "WRITE" || yaml["operation_type"] == "DELETE";
        if changes_things && yaml["side_effects"]["reversible"] == true {
            assert_eq!(yaml["compensation"]["strategy"], "AUTOMATIC", "{}", spec.id);
        }
        assert!(Path::new(&format!("src/specs/{}.yaml", spec.id)).exists());
    }
}

/// A `builtin:` handler runs only under its own id and operation type, at
/// its own risk or higher: a relabelled spec in the registry cannot make
/// program execution pass rules meant for reads.
#[test]
fn built_ins_run_only_under_their_own_spec() {
    let catalogue = Catalogue::new(&CatalogueConfig::default());
    let exec = "builtin:sys.exec.run";
    assert!(
        catalogue
            .check_pinned("sys.exec.run", exec, "EXECUTE", "CRITICAL")
            .is_ok()
    );
    for (id, operation, risk) in [
        ("sys.exec.run", "READ", "CRITICAL"),
        ("sys.exec.run", "EXECUTE", "LOW"),
        ("sys.exec.run", "EXECUTE", "HIGH"),
        ("ops.harmless_read", "EXECUTE", "CRITICAL"),
    ] {
        let refused = catalogue
            .check_pinned(id, exec, operation, risk)
            .expect_err("relabelled");
        assert_eq!(refused.kind, ErrorKind::SandboxViolation, "{refused}");
    }
    assert!(
        catalogue
            .check_pinned("io.fs.read_file", "builtin:io.fs.read_file", "READ", "HIGH")
            .is_ok(),
        "a stricter risk is fine"
    );
    assert!(
        catalogue
            .check_pinned("x.y", "builtin:no.such", "READ", "LOW")
            .is_err()
    );
}
