//! The guide in `docs/src/` cannot drift from the code. Its Rust blocks are doctests of
//! `crates/guide`; this file checks the rest:
//!
//! - every chapter is in `SUMMARY.md` and included by `crates/guide/src/lib.rs` (so its Rust
//!   blocks run), and every relative link and picture points at a file that exists;
//! - every `console` block is run (and every numbered example is in one): `$ senet ...` with the binary this build made,
//!   `$ cargo run --release --example NAME` with the built example; the output (stdout) is
//!   compared line by line with the numbers masked, a line `...` standing for any number of
//!   lines. A block whose first line starts with `# not run by the tests` is skipped, by that
//!   marker alone, and listed in the test's output;
//! - every quote (an `rs` or `wgsl` block whose first line is `// <path>`) is still in that
//!   file, word for word.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SKIP_MARKER: &str = "# not run by the tests";
/// No guide command may run longer than this (the slow ones carry the marker).
const DEADLINE: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fenced block: its info string, its lines, and where it starts (for messages).
struct Block {
    info: String,
    lines: Vec<String>,
    at: String,
}

fn chapters() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("docs/src")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    out.sort();
    assert!(out.len() >= 10, "docs/src has only {} chapters", out.len());
    out
}

fn blocks(file: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    lines: Vec::new(),
                    at: format!("{file}:{}", i + 1),
                })
            }
            (Some(_), Some("")) => out.push(open.take().unwrap()),
            (Some(b), _) => b.lines.push(line.to_string()),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{file}: a code block is never closed");
    out
}

#[test]
fn every_chapter_is_listed_included_and_its_links_resolve() {
    let summary = std::fs::read_to_string(root().join("docs/src/SUMMARY.md")).unwrap();
    let harness = std::fs::read_to_string(root().join("crates/guide/src/lib.rs")).unwrap();
    for (name, text) in chapters() {
        assert!(
            summary.contains(&format!("]({name})")),
            "docs/src/SUMMARY.md does not list {name}"
        );
        assert!(
            harness.contains(&format!("\"{name}\"")),
            "crates/guide/src/lib.rs does not include {name}: its Rust blocks would not run"
        );
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            if target.contains("://") || target.starts_with('#') {
                continue;
            }
            let path = root()
                .join("docs/src")
                .join(target.split('#').next().unwrap());
            assert!(
                path.is_file(),
                "{name}: the link {target} points at no file"
            );
        }
    }
}

/// Every run of digits (with `,` and `.` inside numbers) becomes `#`.
fn mask(line: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = line.trim_end().chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], ',' | '.')
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            out.push('#');
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Whether `got` matches `want` line for line (masked), `...` in `want` matching any lines.
fn matches(want: &[String], got: &[String]) -> bool {
    match want.split_first() {
        None => got.is_empty(),
        Some((w, rest)) if w.trim() == "..." => (0..=got.len()).any(|k| matches(rest, &got[k..])),
        Some((w, rest)) => got
            .split_first()
            .is_some_and(|(g, more)| mask(w) == mask(g) && matches(rest, more)),
    }
}

/// The program and arguments a guide command stands for.
fn program(command: &str, at: &str) -> (PathBuf, Vec<String>) {
    assert!(
        !command.contains(['"', '\'', '|', '>', '<', '&', ';', '$']),
        "{at}: `{command}`: guide commands are plain words (no quoting or shell syntax)"
    );
    let words: Vec<String> = command.split_whitespace().map(String::from).collect();
    let senet = PathBuf::from(env!("CARGO_BIN_EXE_senet"));
    if words.first().map(String::as_str) == Some("senet") {
        return (senet, words[1..].to_vec());
    }
    if let ["cargo", "run", "--release", "--example", name, rest @ ..] =
        &words.iter().map(String::as_str).collect::<Vec<_>>()[..]
    {
        let args = match rest {
            [] => Vec::new(),
            ["--", args @ ..] => args.iter().map(|s| s.to_string()).collect(),
            _ => panic!("{at}: `{command}`: arguments of an example follow `--`"),
        };
        let exe = senet.parent().unwrap().join("examples").join(name);
        assert!(
            exe.is_file(),
            "{at}: {} is not built: run `cargo test --release` (which builds the examples) \
             or `cargo build --release --examples` first",
            exe.display()
        );
        return (exe, args);
    }
    panic!("{at}: `{command}`: a guide command runs `senet ...` or `cargo run --release --example NAME`")
}

/// Runs `command` from the repository root and returns its stdout, within [`DEADLINE`].
fn run(command: &str, at: &str) -> String {
    let (exe, args) = program(command, at);
    let out_file = std::env::temp_dir().join(format!(
        "senet-guide-{}-{}.out",
        std::process::id(),
        at.replace([':', '/', '.'], "-")
    ));
    let err_file = out_file.with_extension("err");
    let mut child = Command::new(&exe)
        .args(&args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{at}: cannot start {}: {e}", exe.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{at}: `{command}` ran past {DEADLINE:?}: mark the block `{SKIP_MARKER}: ...`");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_file).unwrap();
    let _ = std::fs::remove_file(&out_file);
    assert!(
        status.success(),
        "{at}: `{command}` failed ({status}):\n{stdout}"
    );
    stdout
}

#[test]
fn every_console_block_prints_what_the_guide_says() {
    let (mut ran, mut skipped) = (0, Vec::new());
    for (name, text) in chapters() {
        for block in blocks(&name, &text) {
            if block.info != "console" {
                continue;
            }
            if block
                .lines
                .first()
                .is_some_and(|l| l.starts_with(SKIP_MARKER))
            {
                skipped.push(format!("{} ({})", block.at, block.lines[0]));
                continue;
            }
            // `$ command` lines, each followed by the output it must print.
            let mut steps: Vec<(String, Vec<String>)> = Vec::new();
            for line in &block.lines {
                match line.strip_prefix("$ ") {
                    Some(command) => steps.push((command.to_string(), Vec::new())),
                    None => steps
                        .last_mut()
                        .unwrap_or_else(|| panic!("{}: output before any `$ command`", block.at))
                        .1
                        .push(line.clone()),
                }
            }
            for (command, want) in steps {
                let got: Vec<String> = run(&command, &block.at).lines().map(String::from).collect();
                assert!(
                    matches(&want, &got),
                    "{}: `{command}` printed (numbers masked, `...` any lines)\n{}\n--- but the guide says ---\n{}",
                    block.at,
                    got.join("\n"),
                    want.join("\n")
                );
                ran += 1;
            }
        }
    }
    // Every numbered example is shown, and so run, by some chapter.
    let all = chapters().into_iter().map(|(_, t)| t).collect::<String>();
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".rs") {
            if stem.starts_with(|c: char| c.is_ascii_digit()) {
                assert!(
                    all.contains(&format!("$ cargo run --release --example {stem}\n")),
                    "no chapter runs examples/{name}"
                );
            }
        }
    }
    println!("ran {ran} guide commands; not run, by their marker:");
    for s in &skipped {
        println!("  {s}");
    }
    assert!(ran >= 2, "only {ran} guide commands ran");
}

#[test]
fn every_quote_is_still_in_its_file() {
    let mut quotes = 0;
    for (name, text) in chapters() {
        for block in blocks(&name, &text) {
            if !matches!(block.info.as_str(), "rs" | "wgsl") {
                continue;
            }
            let Some(file) = block.lines.first().and_then(|l| l.strip_prefix("// ")) else {
                panic!(
                    "{}: an `rs`/`wgsl` block starts with `// <file it quotes>`",
                    block.at
                );
            };
            let source = std::fs::read_to_string(root().join(file))
                .unwrap_or_else(|e| panic!("{}: cannot read {file}: {e}", block.at));
            let quote = block.lines[1..].join("\n");
            assert!(
                source.contains(&quote),
                "{}: this quote is no longer in {file}, word for word:\n{quote}",
                block.at
            );
            quotes += 1;
        }
    }
    assert!(quotes >= 5, "only {quotes} quotes checked");
}

#[test]
fn the_checker_masks_numbers_and_matches_ellipses() {
    assert_eq!(
        mask("9,443,050 params, 62.7 MFLOPs, 3x32x32"),
        "# params, # MFLOPs, #x#x#"
    );
    assert_eq!(mask("epoch 3."), "epoch #.");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert!(matches(
        &s(&["a 1", "...", "z 2"]),
        &s(&["a 7", "b", "c", "z 9"])
    ));
    assert!(matches(&s(&["a 1", "...", "z 2"]), &s(&["a 7", "z 9"])));
    assert!(!matches(&s(&["a 1", "z 2"]), &s(&["a 7", "b", "z 9"])));
    assert!(!matches(&s(&["a 1"]), &s(&["b 1"])));
    assert!(!matches(&s(&["a 1"]), &s(&["a 1", "extra"])));
}
