//! Outside tools some tests drive (grpcurl, the gateways, kubernetes-validate,
//! jq, python3), and what the tests read about processes from `/proc`.

use std::process::Command;

/// True when every tool in `tools` runs. When one is missing the test is
/// skipped (`false`) and says so ([`crate::skip::skip`]), except under
/// `CI=true`, where it fails: `tests/run.sh` installs grpcurl, Envoy,
/// Traefik, nginx, HAProxy and kubernetes-validate; jq, curl and python3
/// come with the machine.
pub fn available(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    crate::skip::skip(&format!(
        "{} not installed (tests/run.sh installs grpcurl, envoy, traefik, nginx, haproxy and \
         kubernetes-validate; install the others with the system's packages)",
        missing.join(", ")
    ));
    false
}

/// Resident memory of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}
