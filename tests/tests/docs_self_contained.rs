//! The repository explains itself to whoever clones it.
//!
//! - No file leans on design notes kept outside the repository: none names
//!   them (the upper-case word, as in "<word>.md" or "<word> §1") or reaches
//!   through `../` for the `shared/` folder beside the checkout.
//! - Every relative link in the Markdown files (`README.md`, `docs/*.md`)
//!   leads to a file that exists, and a `#fragment` to a heading on it.
//! - Every mention of a page under `docs/` names one that exists; a pointer
//!   `docs/<page>.md, "<Heading>"`, as code comments cite the docs, names a
//!   heading of that page.
//! - The decision page shows every reason, status and body byte for byte
//!   as the decision function answers them.
//!
//! Files are git's tracked and untracked-but-not-ignored ones (so a new page
//! is checked before it is committed), or, outside a git checkout, every
//! file of the tree but `target/` and `.git/`. Each failure names file and line.

use std::{
    collections::HashSet,
    fs,
    path::{Component, Path, PathBuf},
    process::Command,
};

use ipgate_shared::Reason;

/// The workspace root (this crate is `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root")
        .to_path_buf()
}

/// Every text file of the repository, as (path relative to the root, text).
fn text_files(root: &Path) -> Vec<(PathBuf, String)> {
    let listed = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output();
    let paths: Vec<PathBuf> = match listed {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect(),
        _ => {
            let mut found = Vec::new();
            walk(root, Path::new(""), &mut found);
            found
        }
    };
    let mut files: Vec<(PathBuf, String)> = paths
        .into_iter()
        // Deleted but still in the index, or not a regular file.
        .filter(|p| root.join(p).is_file())
        // Binary files are not text anyone reads for citations.
        .filter_map(|p| {
            let text = String::from_utf8(fs::read(root.join(&p)).ok()?).ok()?;
            Some((p, text))
        })
        .collect();
    files.sort();
    assert!(
        files.iter().any(|(p, _)| p == Path::new("README.md")),
        "found no README.md under {}",
        root.display()
    );
    files
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("{}: {e}", root.join(dir).display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let name = entry.file_name();
        if dir.as_os_str().is_empty() && (name == "target" || name == ".git") {
            continue;
        }
        let path = dir.join(&name);
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(root, &path, found),
            Ok(t) if t.is_file() => found.push(path),
            _ => {}
        }
    }
}

fn is_markdown(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "md")
}

/// Fails with every problem, one per line.
fn assert_none(problems: &[String], what: &str) {
    assert!(
        problems.is_empty(),
        "{what}:\n{}",
        problems
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// === the outside design notes ===

/// The upper-case word that names the outside design file, built from parts
/// so that this file does not name it.
fn design_word() -> String {
    ["DES", "IGN"].concat()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// True when `line` has `word` as a whole word (case-sensitive).
fn has_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
    })
}

/// How many folders up `../` may climb from `file` and stay in the
/// repository: from the file's own folder for Markdown (links resolve
/// there), else from the crate it belongs to (where programs resolve paths).
fn depth_inside(root: &Path, file: &Path) -> usize {
    let mut dir = file.parent().unwrap_or(Path::new(""));
    if !is_markdown(file) {
        let mut crate_dir = dir;
        while !crate_dir.as_os_str().is_empty()
            && !root.join(crate_dir).join("Cargo.toml").is_file()
        {
            crate_dir = crate_dir.parent().unwrap_or(Path::new(""));
        }
        if !crate_dir.as_os_str().is_empty() {
            dir = crate_dir;
        }
    }
    dir.components().count()
}

/// True when `line` reaches, through `../`, for a `shared/` folder that
/// lies above the repository when read from a folder `depth` deep.
fn reaches_outside_shared(line: &str, depth: usize) -> bool {
    let bytes = line.as_bytes();
    line.match_indices("shared/").any(|(at, _)| {
        let mut ups = 0;
        let mut start = at;
        while start >= 3 && bytes[start - 3..start] == *b"../" {
            ups += 1;
            start -= 3;
        }
        ups > depth
    })
}

#[test]
fn no_file_leans_on_design_notes_kept_outside() {
    let root = root();
    let word = design_word();
    let mut problems = Vec::new();
    for (path, text) in text_files(&root) {
        let depth = depth_inside(&root, &path);
        for (n, line) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), n + 1);
            if has_word(line, &word) {
                problems.push(format!(
                    "{at}: cites design notes a clone does not have; point to docs/ instead: {}",
                    line.trim()
                ));
            }
            if reaches_outside_shared(line, depth) {
                problems.push(format!(
                    "{at}: refers to a shared/ folder outside the repository: {}",
                    line.trim()
                ));
            }
        }
    }
    assert_none(
        &problems,
        "files that point outside the repository for the product's rules",
    );
}

// === links and pointers ===

/// The headings of a Markdown text, outside code blocks.
fn headings(markdown: &str) -> Vec<String> {
    prose_lines(markdown)
        .filter_map(|(_, line)| {
            let hashes = line.len() - line.trim_start_matches('#').len();
            let rest = &line[hashes..];
            ((1..=6).contains(&hashes) && rest.starts_with(' '))
                .then(|| rest.trim().trim_end_matches('#').trim_end().to_owned())
        })
        .collect()
}

/// The anchors GitHub gives those headings: lower case, punctuation dropped
/// but for `-` and `_`, spaces turned into `-`, repeats numbered.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for heading in headings(markdown) {
        let slug: String = heading
            .replace('`', "")
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .flat_map(char::to_lowercase)
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !seen.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    seen
}

/// Lines (numbered from 1) outside fenced code blocks.
fn prose_lines(markdown: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut fenced = false;
    markdown.lines().enumerate().filter_map(move |(n, line)| {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            return None;
        }
        (!fenced).then_some((n + 1, line))
    })
}

/// A line without its inline code spans.
fn without_code(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The link destinations of one line: inline `[text](dest "title")` and
/// reference definitions `[label]: dest`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(open) = rest.find("](") {
        let after = &rest[open + 2..];
        let dest = match after.strip_prefix('<') {
            Some(angled) => angled.split('>').next().unwrap_or_default(),
            None => {
                let end = after.find([')', ' ']).unwrap_or(after.len());
                &after[..end]
            }
        };
        targets.push(dest.to_owned());
        rest = after;
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some((label, dest)) = trimmed.split_once("]:")
        && !label.contains(']')
        && let Some(dest) = dest.split_whitespace().next()
    {
        targets.push(dest.trim_matches(['<', '>']).to_owned());
    }
    targets
}

/// `path` with `.` and `..` resolved, or `None` when it climbs out.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// What is wrong with the link `dest` written in `file`, if anything.
fn broken_link(root: &Path, file: &Path, dest: &str) -> Option<String> {
    if dest.is_empty()
        || dest.contains("://")
        || dest.starts_with("mailto:")
        || dest.starts_with("tel:")
    {
        return None;
    }
    let (path_part, fragment) = match dest.split_once('#') {
        Some((p, f)) => (p, Some(f)),
        None => (dest, None),
    };
    let path_part = path_part.split('?').next().unwrap_or_default();
    let target = if path_part.is_empty() {
        file.to_path_buf()
    } else if let Some(from_root) = path_part.strip_prefix('/') {
        PathBuf::from(from_root)
    } else {
        file.parent()
            .unwrap_or(Path::new(""))
            .join(path_part.replace("%20", " "))
    };
    let Some(target) = normalize(&target) else {
        return Some(format!("{dest} leads out of the repository"));
    };
    let full = root.join(&target);
    if !full.exists() {
        return Some(format!("{dest}: {} does not exist", target.display()));
    }
    if let Some(fragment) = fragment.filter(|f| !f.is_empty())
        && is_markdown(&target)
    {
        let text = fs::read_to_string(&full).unwrap_or_default();
        if !anchors(&text).contains(&fragment.to_lowercase()) {
            return Some(format!(
                "{dest}: {} has no heading with anchor #{fragment}",
                target.display()
            ));
        }
    }
    None
}

#[test]
fn relative_links_in_the_docs_lead_to_files_that_exist() {
    let root = root();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, text) in text_files(&root) {
        if !is_markdown(&path) {
            continue;
        }
        for (n, line) in prose_lines(&text) {
            for dest in link_targets(line) {
                checked += 1;
                if let Some(problem) = broken_link(&root, &path, &dest) {
                    problems.push(format!("{}:{n}: {problem}", path.display()));
                }
            }
        }
    }
    assert!(checked > 0, "no links found at all: is the parser blind?");
    assert_none(&problems, "broken links in the docs");
}

/// Every mention of a page under `docs/` in `line`: (page, heading named
/// right after it as `, "Heading"`, if any).
fn doc_mentions(line: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("docs/") {
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| is_word_char(c) || c == '-') {
            continue;
        }
        let after = &line[at + "docs/".len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '/'))
            .unwrap_or(after.len());
        let Some(rest) = after[name_len..].strip_prefix(".md") else {
            continue;
        };
        if name_len == 0 || rest.starts_with(is_word_char) {
            continue;
        }
        let page = format!("docs/{}.md", &after[..name_len]);
        let heading = rest
            .strip_prefix(", \"")
            .and_then(|h| h.split_once('"'))
            .map(|(h, _)| h.to_owned());
        found.push((page, heading));
    }
    found
}

#[test]
fn pointers_to_the_docs_name_a_page_and_a_heading_that_exist() {
    let root = root();
    let mut problems = Vec::new();
    let mut pointers = 0;
    for (path, text) in text_files(&root) {
        for (n, line) in text.lines().enumerate() {
            for (page, heading) in doc_mentions(line) {
                let at = format!("{}:{}", path.display(), n + 1);
                let Ok(page_text) = fs::read_to_string(root.join(&page)) else {
                    problems.push(format!("{at}: {page} does not exist"));
                    continue;
                };
                if let Some(heading) = heading {
                    pointers += 1;
                    if !headings(&page_text).contains(&heading) {
                        problems.push(format!("{at}: {page} has no heading \"{heading}\""));
                    }
                }
            }
        }
    }
    assert_none(&problems, "pointers to docs that do not exist");
    assert!(
        pointers > 0,
        "no `docs/<page>.md, \"<Heading>\"` pointer found: is the parser blind?"
    );
}

// === the decision page ===

#[test]
fn the_decision_page_shows_every_answer_byte_for_byte() {
    let page = "docs/decisions.md";
    let text = fs::read_to_string(root().join(page)).expect(page);
    let mut problems = Vec::new();
    for reason in Reason::ALL {
        let name = format!("`{}`", reason.as_str());
        if !text.contains(&name) {
            problems.push(format!("{page}: reason {name} is not named"));
        }
        if let Some(body) = reason.body() {
            let row = format!("| {name} | {} | `{body}` |", reason.http_status());
            if !text.contains(&row) {
                problems.push(format!("{page}: no table row {row}"));
            }
        }
    }
    assert_none(
        &problems,
        "the decision page and the decision function disagree",
    );
}

// === the detectors themselves ===

#[test]
fn the_detectors_catch_what_they_are_for() {
    let word = design_word();
    for cited in [
        format!("//! Order of checks ({word} §1)"),
        format!("`{word}.md` (kept beside the repository)"),
        format!("/// ({word}'s worst case)"),
        format!("Every entry form {word} rejects"),
    ] {
        assert!(has_word(&cited, &word), "{cited}");
    }
    for fine in ["by design", "REDESIGNED", "the DESIGNER", "MY_DESIGN_X"] {
        assert!(!has_word(fine, &word), "{fine}");
    }

    // Built from parts, like the word, so this file passes its own test.
    let up = "../";
    assert!(reaches_outside_shared(&format!("see {up}shared/notes"), 0));
    assert!(reaches_outside_shared(
        &format!("[x]({up}{up}shared/a.md)"),
        1
    ));
    assert!(!reaches_outside_shared(
        &format!("[x]({up}shared/src/entry.rs)"),
        1
    ));
    assert!(!reaches_outside_shared("shared/src/entry.rs", 0));
    assert!(!reaches_outside_shared(&format!("é{up}shared/"), 1));

    assert_eq!(
        link_targets(r#"see [a](b.md#c) and [d](<e f.md> "t"), not `[g](h)`"#),
        ["b.md#c", "e f.md"]
    );
    assert_eq!(link_targets("[ref]: ../x.md"), ["../x.md"]);
    assert_eq!(
        normalize(Path::new("docs/../README.md")),
        Some("README.md".into())
    );
    assert_eq!(normalize(Path::new("../x")), None);

    let page =
        "# Top\n\n## Order of checks\n```\n## not a heading\n```\n## `x-request-id` and more\n";
    assert_eq!(
        headings(page),
        ["Top", "Order of checks", "`x-request-id` and more"]
    );
    let anchors = anchors(page);
    assert!(anchors.contains("order-of-checks") && anchors.contains("x-request-id-and-more"));

    // Pages that do not exist, named from parts for the same reason.
    let docs = "docs";
    assert_eq!(
        doc_mentions(&format!(
            r#"// {docs}/some-page.md, "Order of checks"; see {docs}/other.md."#
        )),
        [
            (
                format!("{docs}/some-page.md"),
                Some("Order of checks".to_owned())
            ),
            (format!("{docs}/other.md"), None),
        ]
    );
    assert!(doc_mentions(&format!("my{docs}/a.md {docs}/x.mdx {docs}/.md")).is_empty());
}
