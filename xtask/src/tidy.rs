//! The `tidy` checks: mechanical conventions enforced as ordinary tests, so nobody has to
//! remember them (after rust-analyzer's `tidy.rs`). They run under `cargo test` and
//! `cargo xtask test`.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    rust_files(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    fn all_rust_files() -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in ["crates", "xtask", "benches"] {
            rust_files(&root().join(dir), &mut files);
        }
        assert!(files.len() > 20, "tidy found only {} files", files.len());
        files
    }

    fn crate_dirs() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// Every Rust file opens with a `//!` line saying what it holds.
    #[test]
    fn every_rust_file_opens_with_a_module_doc() {
        let mut missing = Vec::new();
        for file in all_rust_files() {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with("#!"))
                .unwrap_or("");
            if !first.starts_with("//!") {
                missing.push(
                    file.strip_prefix(root())
                        .unwrap_or(&file)
                        .display()
                        .to_string(),
                );
            }
        }
        assert!(
            missing.is_empty(),
            "files without a leading `//!` doc line:\n{}",
            missing.join("\n")
        );
    }

    /// Every crate under crates/ inherits the workspace lints and is on the architecture map.
    #[test]
    fn every_crate_uses_workspace_lints_and_is_on_the_map() {
        let map = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap_or_default();
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
        for dir in crate_dirs() {
            let name = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            assert!(
                manifest.contains("[lints]\nworkspace = true"),
                "{name}/Cargo.toml does not inherit the workspace lints"
            );
            assert!(
                map.contains(&format!("`{name}`")),
                "docs/ARCHITECTURE.md does not mention `{name}`"
            );
            let published = !manifest.contains("publish = false");
            if published {
                assert!(
                    readme.contains(&format!("`{name}`")),
                    "README.md does not list `{name}`"
                );
            }
        }
    }

    /// Each published crate's lib.rs opens with a crate doc that has a runnable example, and
    /// warns about missing docs through the workspace lints.
    #[test]
    fn every_published_crate_has_a_crate_doc_with_an_example() {
        for dir in crate_dirs() {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            if manifest.contains("publish = false") {
                continue;
            }
            let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap_or_default();
            let doc: String = lib
                .lines()
                .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                doc.len() > 200,
                "{}: crate doc is missing or too short",
                dir.display()
            );
            assert!(
                doc.contains("//! ```"),
                "{}: crate doc has no example",
                dir.display()
            );
        }
    }

    /// Libraries report through `tracing` or return values, never by printing.
    #[test]
    fn libraries_do_not_print() {
        let mut offenders = Vec::new();
        for dir in crate_dirs() {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            if manifest.contains("publish = false") {
                continue; // test support may print skip notices
            }
            let mut files = Vec::new();
            rust_files(&dir.join("src"), &mut files);
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                // Only code before the unit tests counts.
                let code = text.split("#[cfg(test)]").next().unwrap_or("");
                for (i, line) in code.lines().enumerate() {
                    let l = line.trim_start();
                    if l.starts_with("//") {
                        continue;
                    }
                    if l.contains("println!(") || l.contains("eprintln!(") || l.contains("dbg!(") {
                        offenders.push(format!("{}:{}", file.display(), i + 1));
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "printing in library code:\n{}",
            offenders.join("\n")
        );
    }

    /// Docs carry no leftover markers.
    #[test]
    fn docs_have_no_todo_markers() {
        for doc in ["README.md", "docs/ARCHITECTURE.md", "docs/BENCHMARKS.md"] {
            let text = std::fs::read_to_string(root().join(doc)).unwrap_or_default();
            assert!(!text.is_empty(), "{doc} is missing");
            for marker in ["TODO", "FIXME", "XXX", "TBD"] {
                assert!(!text.contains(marker), "{doc} contains {marker}");
            }
        }
    }
}
