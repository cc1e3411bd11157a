//! Statements built at run time (optional filters, multi-row inserts): bind
//! values collected while the SQL is written, each handed out as its
//! numbered placeholder (`$n`), which SQLite and PostgreSQL both accept.

use sqlx::{Any, any::AnyArguments, query::Query};

/// The values of one statement, in placeholder order.
#[derive(Default)]
pub(super) struct Args(Vec<Arg>);

enum Arg {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Args {
    fn push(&mut self, arg: Arg) -> String {
        self.0.push(arg);
        format!("${}", self.0.len())
    }

    /// An integer's placeholder.
    pub fn int(&mut self, n: i64) -> String {
        self.push(Arg::Int(n))
    }

    /// A text's placeholder.
    pub fn text(&mut self, s: &str) -> String {
        self.push(Arg::Text(s.to_owned()))
    }

    /// A byte string's placeholder.
    pub fn bytes(&mut self, b: &[u8]) -> String {
        self.push(Arg::Bytes(b.to_vec()))
    }

    /// Binds every value to `query`, in order.
    pub fn bind(
        self,
        mut query: Query<'static, Any, AnyArguments>,
    ) -> Query<'static, Any, AnyArguments> {
        for arg in self.0 {
            query = match arg {
                Arg::Int(n) => query.bind(n),
                Arg::Text(s) => query.bind(s),
                Arg::Bytes(b) => query.bind(b),
            };
        }
        query
    }
}
