//! Build steps:
//! * Rebuilds when a migration is added: `sqlx::migrate!` embeds the migration files
//!   at compile time, and without this cargo does not notice a new file in the
//!   folder (the build script sqlx's documentation gives for `migrate!`).
//! * Stamps the build with its git commit (`KURZ_GIT_COMMIT`, for the
//!   `kurz_build_info` metric); `unknown` outside a git checkout.
//! * Embeds the web interface (`ui/`): writes `$OUT_DIR/ui_assets.rs`, a table of
//!   every file served under `/app/` with its bytes (`include_bytes!`), so the
//!   binary serves the page with nothing else installed and no Node at build time.
//!   `ui/README.md` and `ui/vendor.sh` (the update script) are not served.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=ui");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KURZ_GIT_COMMIT={commit}");
    // Only a path that exists: cargo reruns the script every build for a missing one
    // (in a git worktree `.git` is a file).
    if root_has(".git/HEAD") {
        println!("cargo:rerun-if-changed=.git/HEAD");
    }
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut files = Vec::new();
    collect(&root.join("ui"), &root.join("ui"), &mut files);
    files.sort();
    let mut out = String::from(
        "/// The web interface's files: (path under /app/, bytes).\npub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        out.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("ui_assets.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        panic!("cannot write {}: {e}", dest.display());
    }
}

fn root_has(path: &str) -> bool {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join(path)
        .is_file()
}

/// Every servable file under `dir`, as (path relative to `base` with `/`, full path).
fn collect(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(base, &path, files);
            continue;
        }
        let Ok(rel) = path.strip_prefix(base) else {
            continue;
        };
        let name = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if name == "README.md" || name == "vendor.sh" || name.starts_with('.') {
            continue;
        }
        files.push((name, path));
    }
}
