//! docs/reference/env-vars.md is generated from settings::ALL; fail when stale.
//! Regenerate with `UPDATE_DOCS=1 cargo test -p scope-config --test docs`.

#[test]
fn env_vars_doc_is_current() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/env-vars.md");
    let want = scope_config::settings::render_env_vars_md();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: run `UPDATE_DOCS=1 cargo test -p scope-config --test docs`",
        path.display()
    );
    for sp in scope_config::settings::ALL {
        assert!(
            have.contains(&format!("`{}`", sp.name)),
            "{} missing from the doc",
            sp.name
        );
    }
}
