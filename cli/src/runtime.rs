//! The async runtime a server runs on: tokio's multi-threaded scheduler
//! with as many workers as asked, or one thread doing everything
//! (`--runtime`, `--worker-threads`). Which is faster depends on the
//! machine and what shares it: BENCHMARKS.md has the measurements that
//! chose the default.

use clap::{Args, ValueEnum};

/// Which tokio scheduler runs the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Flavor {
    /// Tasks are spread over `--worker-threads` threads and stolen between
    /// them.
    #[default]
    MultiThread,
    /// Every task runs on one thread: no hand-over between threads, one
    /// core at most.
    CurrentThread,
}

/// Runtime flags shared by every subcommand.
#[derive(Args, Debug)]
#[command(next_help_heading = "Runtime")]
pub struct RuntimeArgs {
    /// Scheduler: `multi-thread` or `current-thread`.
    #[arg(long, env = "IPGATE_RUNTIME", value_enum, default_value_t = Flavor::MultiThread, global = true)]
    runtime: Flavor,
    /// Worker threads of the multi-threaded scheduler (default: one a CPU
    /// core); not allowed with `--runtime current-thread`.
    #[arg(long, env = "IPGATE_WORKER_THREADS", global = true, value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
}

impl RuntimeArgs {
    /// Builds the runtime these flags describe.
    pub fn build(&self) -> anyhow::Result<tokio::runtime::Runtime> {
        let mut builder = match (self.runtime, self.worker_threads) {
            (Flavor::CurrentThread, Some(_)) => {
                anyhow::bail!("--worker-threads is for --runtime multi-thread")
            }
            (Flavor::CurrentThread, None) => tokio::runtime::Builder::new_current_thread(),
            (Flavor::MultiThread, threads) => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                if let Some(threads) = threads {
                    builder.worker_threads(usize::from(threads));
                }
                builder
            }
        };
        Ok(builder.enable_all().build()?)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        runtime: RuntimeArgs,
    }

    fn build(args: &[&str]) -> anyhow::Result<tokio::runtime::Runtime> {
        let flags = Flags::try_parse_from(std::iter::once("ipgate").chain(args.iter().copied()))?;
        flags.runtime.build()
    }

    #[test]
    fn each_flavour_builds_a_runtime_that_runs_tasks() {
        for args in [
            &[][..],
            &["--runtime", "current-thread"][..],
            &["--worker-threads", "1"][..],
        ] {
            let runtime = build(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let answer = runtime.block_on(async { tokio::spawn(async { 42 }).await.ok() });
            assert_eq!(answer, Some(42), "{args:?}");
        }
    }

    #[test]
    fn worker_threads_are_refused_with_one_thread_and_out_of_range() {
        let e = build(&["--runtime", "current-thread", "--worker-threads", "2"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("--worker-threads is for --runtime multi-thread"),
            "{e}"
        );
        assert!(build(&["--worker-threads", "0"]).is_err());
    }
}
