//! `docs/admin-api.md`, run as written: every `sh` block, in order, in bash,
//! with grpcurl through server reflection, against a real control plane on
//! SQLite and on PostgreSQL. A block followed by a `text` block that starts
//! with `ERROR:` must fail with the `Code:` shown there; every other block
//! must succeed. Every RPC of `admin.proto` must be called by a block that
//! succeeds, so this test is also the proof that each RPC is reachable by
//! grpcurl on both backends.

use std::{collections::BTreeSet, path::Path, process::Command};

use ipgate_tests::{Backend, ControlPlane, OWNER_TOKEN, tools};

/// The doc's setup line; the test points it at its control plane.
const CP_LINE: &str = "CP=127.0.0.1:50051";

/// One `sh` block of the doc.
struct Example {
    code: String,
    /// The gRPC code (grpcurl's spelling, e.g. `NotFound`) the block must
    /// fail with, when the doc shows an error after it.
    expect_error: Option<String>,
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `sh` blocks of `doc`, each with the error the doc shows after it.
fn examples(doc: &str) -> Vec<Example> {
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
fn assigned(code: &str) -> Vec<String> {
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

/// The RPC names of `service AdminService`.
fn rpcs(proto: &str) -> Vec<String> {
    proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|l| l[..l.find('(').expect("rpc Name(")].trim().to_owned())
        .collect()
}

/// Runs one block in bash, with the variables earlier blocks left in
/// `state`; saves the variables afterwards. Returns (success, stdout, stderr).
fn run(dir: &Path, code: &str, names: &BTreeSet<String>, own: &[String]) -> (bool, String, String) {
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
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .env("IPGATE_TOKEN", OWNER_TOKEN)
        .output()
        .expect("run bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn every_example_runs_as_written(backend: Backend) {
    if !tools::available(&["grpcurl", "jq"]) {
        return;
    }
    let doc = read("../docs/admin-api.md");
    let examples = examples(&doc);

    // Every RPC is called, and succeeds, in some block.
    let called: BTreeSet<&str> = examples
        .iter()
        .filter(|e| e.expect_error.is_none())
        .flat_map(|e| e.code.split("AdminService/").skip(1))
        .map(|after| {
            let end = after
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(after.len());
            &after[..end]
        })
        .collect();
    let uncovered: Vec<String> = rpcs(&read("../proto/ipgate/admin/v1/admin.proto"))
        .into_iter()
        .filter(|rpc| !called.contains(rpc.as_str()))
        .collect();
    assert!(
        uncovered.is_empty(),
        "docs/admin-api.md has no succeeding example for {uncovered:?}"
    );
    for e in examples.iter().filter(|e| e.expect_error.is_some()) {
        assert_eq!(
            e.code.matches("grpcurl ").count(),
            1,
            "a block that shows an error holds exactly one call, so the error is that call's:\n{}",
            e.code
        );
        assert!(assigned(&e.code).is_empty(), "{}", e.code);
    }
    assert_eq!(
        doc.matches(CP_LINE).count(),
        1,
        "the doc sets {CP_LINE} once"
    );

    let cp = ControlPlane::start(&backend);
    let dir = tempfile::tempdir().expect("temporary directory");
    let names: BTreeSet<String> = examples.iter().flat_map(|e| assigned(&e.code)).collect();
    let mut transcript = String::new();
    for (i, example) in examples.iter().enumerate() {
        let code = example.code.replace(CP_LINE, &format!("CP={}", cp.addr));
        let (ok, stdout, stderr) = run(dir.path(), &code, &names, &assigned(&code));
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
    println!("{transcript}");

    // What the doc says the examples show.
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
    let csv = std::fs::read_to_string(dir.path().join("blocked.csv")).expect("blocked.csv");
    assert_eq!(
        csv.lines().next(),
        Some(
            "time,request_id,api,api_key_id,method,path,status_code,client_ip,reason,matched_label,enforcer_id"
        ),
        "the export starts with the header row the doc shows: {csv:?}"
    );
}

ipgate_tests::on_both_backends!(every_example_runs_as_written);
