//! Scripted interaction tests of the Raft node, in the style of etcd raft's data-driven tests
//!
//! Every `core/testdata/*.txt` transcript is run by one interpreter (see the `script` module for
//! the file format and the commands). A transcript whose output differs fails the test with the
//! file, the line of the first differing command and a diff. Run with `SHALE_REWRITE=1` to
//! write the actual output into the files instead; only keep the change if you understand it.
//! With `CI` set (as CI services do), a rewrite is refused.

#[path = "interaction/mod.rs"]
mod script;

use std::path::{Path, PathBuf};

use script::{Env, Script};

/// The first mismatch of a transcript, ready to print
struct Mismatch {
    /// The transcript
    file: PathBuf,
    /// 1-based line of the command
    line: usize,
    /// The command
    command: String,
    /// The diff of expected against actual
    diff: String,
    /// How many later blocks of the same file differ too
    later: usize,
}

/// Runs one transcript; returns the actual outputs of its blocks
///
/// A command the interpreter cannot run (unknown name, bad argument, a node that does not
/// exist) prints `error: ...` as its output, so that it shows up in the diff (and in the file
/// when rewriting) at the line where it happened.
fn run(script: &Script) -> Vec<Vec<String>> {
    let mut env = Env::new();
    let mut outputs = Vec::new();
    for block in &script.blocks {
        match script::handle(&mut env, &block.command) {
            Ok(lines) => outputs.push(lines),
            Err(e) => outputs.push(vec![format!("error: {e}")]),
        }
    }
    outputs
}

/// Every transcript, sorted by name
fn transcripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no transcripts in {}", dir.display());
    files
}

/// Runs every transcript; fails on any mismatch unless `SHALE_REWRITE=1`
#[test]
fn interaction_transcripts() {
    let rewrite = std::env::var("SHALE_REWRITE").is_ok_and(|v| v == "1");
    // Under CI a rewrite would turn any mismatch into a pass: refuse it.
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !(rewrite && ci),
        "SHALE_REWRITE=1 under CI would rewrite the transcripts instead of checking them"
    );
    let mut mismatches = Vec::new();
    for path in transcripts() {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let script = Script::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let actual = run(&script);
        if rewrite {
            let new = script.rewritten(&actual);
            if new != text {
                std::fs::write(&path, new).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                eprintln!("rewrote {}", path.display());
            }
            continue;
        }
        let mut differing = script
            .blocks
            .iter()
            .zip(&actual)
            .filter(|(block, lines)| &block.expected != *lines);
        if let Some((block, lines)) = differing.next() {
            mismatches.push(Mismatch {
                file: path.clone(),
                line: block.line,
                command: block.command.clone(),
                diff: script::diff::line_diff(&block.expected, lines),
                later: differing.count(),
            });
        }
    }
    for m in &mismatches {
        eprintln!(
            "\n{}:{}: output of `{}` differs (- expected, + actual):\n{}",
            m.file.display(),
            m.line,
            m.command,
            m.diff
        );
        if m.later > 0 {
            eprintln!("({} later block(s) of this file differ too)", m.later);
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} transcript(s) differ: {}; if the change is intended, rerun with SHALE_REWRITE=1 \
         and review the diff",
        mismatches.len(),
        mismatches
            .iter()
            .map(|m| format!("{}:{}", m.file.display(), m.line))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
