//! The project's docs as test input: the README's `sh` code blocks, section
//! by section, and the admin API guide's examples, so tests can run the
//! commands as written.

use std::{collections::BTreeSet, net::SocketAddr, path::Path, process::Command};

/// A file of the repository, by its path from the root.
pub fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the repository")
        .to_path_buf()
}

/// The README's text.
pub fn readme() -> String {
    read("README.md")
}

/// The `sh` code blocks of the section titled `## {section}`, in order.
pub fn section_blocks(markdown: &str, section: &str) -> Vec<String> {
    let start = markdown
        .find(&format!("\n## {section}\n"))
        .unwrap_or_else(|| panic!("no section {section:?}"));
    let body = &markdown[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut rest = &body[..end];
    while let Some(open) = rest.find("```sh\n") {
        let after = &rest[open + 6..];
        let close = after.find("```").expect("closed code block");
        blocks.push(after[..close].to_owned());
        rest = &after[close + 3..];
    }
    blocks
}

/// `text` with its one occurrence of `from` replaced by `to`; panics unless
/// `from` occurs exactly once, so a doc edit cannot slip past a test.
#[track_caller]
pub fn replace_once(text: &str, from: &str, to: &str) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, 1,
        "{from:?} occurs {found} times, not once, in:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The default `ipgate dev --help` shows for `flag` (e.g. `--listen`).
pub fn dev_default(flag: &str) -> String {
    let out = Command::new(crate::process::ipgate_bin())
        .args(["dev", "--help"])
        .output()
        .expect("run ipgate dev --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let at = help
        .find(&format!("{flag} <"))
        .unwrap_or_else(|| panic!("`ipgate dev --help` has no {flag}:\n{help}"));
    let rest = &help[at..];
    let default = rest
        .find("[default: ")
        .map(|i| &rest[i + "[default: ".len()..])
        .unwrap_or_else(|| panic!("no default for {flag}:\n{help}"));
    default[..default.find(']').expect("closed default")].to_owned()
}

/// The setup line of `docs/admin-api.md`: the control plane's address.
pub const GUIDE_CP_LINE: &str = "CP=127.0.0.1:7151";

/// One `sh` block of the admin API guide.
pub struct Example {
    pub code: String,
    /// The gRPC code (grpcurl's spelling, e.g. `NotFound`) the block must
    /// fail with, when the guide shows an error after it.
    pub expect_error: Option<String>,
}

/// The `sh` blocks of `doc`, each with the error the doc shows after it.
pub fn examples(doc: &str) -> Vec<Example> {
    let mut examples = Vec::new();
    let mut rest = doc;
    while let Some(open) = rest.find("```sh\n") {
        let after = &rest[open + 6..];
        let close = after.find("\n```").expect("closed code block");
        let code = after[..close + 1].to_owned();
        rest = &after[close + 4..];
        let expect_error = rest
            .trim_start()
            .strip_prefix("```text\nERROR:\n")
            .map(|shown| {
                let shown = &shown[..shown.find("```").expect("closed text block")];
                shown
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Code: "))
                    .unwrap_or_else(|| panic!("an ERROR block without a Code line:\n{shown}"))
                    .trim()
                    .to_owned()
            });
        examples.push(Example { code, expect_error });
    }
    examples
}

/// Shell variables a block assigns (`NAME=…` or `export NAME=…` at the start of a line).
pub fn assigned(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, _) = line.split_once('=')?;
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            valid.then(|| name.to_owned())
        })
        .collect()
}

/// Runs one block in bash in `dir`, with the variables earlier blocks left
/// in `dir/state.sh`; saves the variables afterwards. `envs` are set for
/// the shell. Returns (success, stdout, stderr).
fn run_block(
    dir: &Path,
    code: &str,
    names: &BTreeSet<String>,
    own: &[String],
    envs: &[(&str, &str)],
) -> (bool, String, String) {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let own = own.join(" ");
    let script = format!(
        r#"set -uo pipefail
if [ -f state.sh ]; then source state.sh; fi
set -e
{code}
set +e
for v in {own}; do
  if [ -z "${{!v:-}}" ] || [ "${{!v}}" = null ]; then echo "the example left \$$v empty or null" >&2; exit 97; fi
done
declare -p {names} > state.sh 2>/dev/null
exit 0
"#,
        names = names.join(" ")
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .current_dir(dir)
        .env_remove("IPGATE_TOKEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs every example of `docs/admin-api.md`, in order, as written but for
/// the setup line, which points at `control_plane`, in `dir` (where the
/// guide's `.ipgate/admin-token` is read unless `envs` sets
/// `IPGATE_TOKEN`). A block the guide shows an error after must fail with
/// that code; every other block must succeed. Returns the transcript, which
/// must show what the guide says the examples show.
pub fn run_admin_guide(dir: &Path, control_plane: SocketAddr, envs: &[(&str, &str)]) -> String {
    let doc = read("docs/admin-api.md");
    let examples = examples(&doc);
    assert_eq!(
        doc.matches(GUIDE_CP_LINE).count(),
        1,
        "the guide sets {GUIDE_CP_LINE} once"
    );
    let names: BTreeSet<String> = examples.iter().flat_map(|e| assigned(&e.code)).collect();
    let mut transcript = String::new();
    for (i, example) in examples.iter().enumerate() {
        let code = example
            .code
            .replace(GUIDE_CP_LINE, &format!("CP={control_plane}"));
        let (ok, stdout, stderr) = run_block(dir, &code, &names, &assigned(&code), envs);
        transcript.push_str(&format!("$ {}{stdout}{stderr}\n", example.code));
        match &example.expect_error {
            None => assert!(
                ok,
                "example {i} failed\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                example.code
            ),
            Some(code) => {
                assert!(
                    !ok,
                    "example {i} should fail with {code}\n{}\n--- stdout\n{stdout}",
                    example.code
                );
                assert!(
                    stderr.contains(&format!("Code: {code}\n")),
                    "example {i} should fail with {code}\n{}\n--- stderr\n{stderr}",
                    example.code
                );
            }
        }
    }

    // What the guide says the examples show.
    for shown in [
        "ipgate.admin.v1.AdminService.CreateApiKey",
        "\"validateOnly\": true",
        "ipg_live_",
        "\"allowed\": true",
        "IP_NOT_ALLOWED_KEY",
        "\"matchedList\": \"api_key\"",
        "API_KEY_STATUS_REVOKED",
        "\"revokedKeyIds\"",
        "\"currentRevision\"",
        "\"fieldViolations\"",
    ] {
        assert!(
            transcript.contains(shown),
            "the examples' output lacks {shown:?}\n{transcript}"
        );
    }
    let csv = std::fs::read_to_string(dir.join("blocked.csv")).expect("blocked.csv");
    let guide = read("docs/admin-api.md");
    let shown_header = guide
        .lines()
        .find(|l| l.starts_with("time,request_id,"))
        .expect("the guide shows the CSV header row");
    assert_eq!(
        csv.lines().next(),
        Some(shown_header),
        "the export starts with the header row the guide shows: {csv:?}"
    );
    transcript
}
