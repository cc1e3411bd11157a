//! `ipgate test-access`: what an enforcer would decide for an API, a key and
//! a client address right now, and which entry matched.

use clap::Args;
use ipgate_shared::proto::admin::v1::{TestAccessRequest, TestAccessResponse};

use super::{
    Admin, AdminArgs, Output,
    output::{details, print_table, time_relative},
};

/// Flags of `ipgate test-access`.
#[derive(Args, Debug)]
pub struct TestAccessArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Slug of the API.
    #[arg(long)]
    api: String,
    /// Id of the key to test as (leave out for a request without a key).
    #[arg(long, default_value = "", hide_default_value = true)]
    key: String,
    /// The client address to test.
    #[arg(long)]
    ip: String,
    /// HTTP method of the request.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Path of the request (decides which route scope it needs).
    #[arg(long, default_value = "/")]
    path: String,
}

/// Asks the control plane for a decision and prints it. The exit status is
/// 0 whether access is allowed or not: the answer is the output.
pub async fn run(mut client: Admin, out: Output, args: TestAccessArgs) -> anyhow::Result<()> {
    let response = client
        .test_access(TestAccessRequest {
            api: args.api,
            api_key_id: args.key,
            client_ip: args.ip.clone(),
            method: args.method,
            path: args.path,
        })
        .await?
        .into_inner();
    out.print(&response, |r| print_decision(r, &args.ip))
}

fn print_decision(r: &TestAccessResponse, ip: &str) {
    if r.allowed {
        println!("ALLOWED: {ip} gets through ({}).", r.reason);
    } else {
        println!(
            "BLOCKED: {ip} gets {} {} ({}).",
            r.http_status, r.error_code, r.reason
        );
    }
    let mut d = details();
    d.add_row(["Reason:", &r.reason]);
    d.add_row(["HTTP status:", &r.http_status.to_string()]);
    if !r.error_code.is_empty() {
        d.add_row(["Error code:", &r.error_code]);
    }
    if let Some(entry) = &r.matched_entry {
        let list = match r.matched_list.as_str() {
            "api" => "the API's allowlist",
            "api_key" => "the key's allowlist",
            other => other,
        };
        let label = if entry.label.is_empty() {
            String::new()
        } else {
            format!(" {:?}", entry.label)
        };
        d.add_row(["Matched:", &format!("{}{label} on {list}", entry.cidr)]);
        if entry.expires_at.is_some() {
            d.add_row(["Entry expires:", &time_relative(entry.expires_at.as_ref())]);
        }
    }
    if !r.body.is_empty() {
        d.add_row(["Body:", &r.body]);
    }
    d.add_row(["At revision:", &r.revision.to_string()]);
    print_table(d);
}
