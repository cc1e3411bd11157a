//! Rows in PostgreSQL's binary COPY format, for `COPY … FROM STDIN (FORMAT
//! BINARY)`: a signature and two zero words, then per row a field count
//! and each field as its length and its bytes in the type's binary form,
//! then -1 (<https://www.postgresql.org/docs/current/sql-copy.html>,
//! "Binary Format"). Only the types the usage log uses: BIGINT, TEXT and
//! BYTEA. sqlx sends the bytes (`PgCopyIn`) but has no encoder for them,
//! and the crates that do are either for another driver (tokio-postgres's
//! `BinaryCopyInWriter`) or unmaintained, so this is the format's few
//! lines.

/// A COPY stream being written, row by row.
pub(super) struct CopyRows {
    buf: Vec<u8>,
}

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyRows {
    /// A stream with its header, with room for about `bytes`.
    pub(super) fn with_capacity(bytes: usize) -> CopyRows {
        let mut buf = Vec::with_capacity(bytes + 19 + 2);
        buf.extend_from_slice(SIGNATURE);
        // Flags (no OIDs), then the length of the header extension.
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        CopyRows { buf }
    }

    /// Starts a row of `fields` fields.
    pub(super) fn row(&mut self, fields: u16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    /// A BIGINT field.
    pub(super) fn int(&mut self, n: i64) -> &mut Self {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// A TEXT field (UTF-8, as the database's encoding must be).
    pub(super) fn text(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// A BYTEA field.
    pub(super) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        // A field is at most 1 GB in PostgreSQL; the log's fields are
        // bounded far below that when the event is read.
        let len = i32::try_from(b.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(b);
        self
    }

    /// The whole stream, with its trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_of_each_type_in_the_documented_layout() {
        let mut rows = CopyRows::with_capacity(0);
        rows.row(3).int(-2).text("é").bytes(&[0, 255]);
        let out = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend([0, 3]);
        expected.extend([0, 0, 0, 8, 255, 255, 255, 255, 255, 255, 255, 254]);
        expected.extend([0, 0, 0, 2, 0xc3, 0xa9]);
        expected.extend([0, 0, 0, 2, 0, 255]);
        expected.extend([255, 255]);
        assert_eq!(out, expected);
    }
}
