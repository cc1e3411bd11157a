//! Events -> the wire form of one `ReportEvents` batch, compact: the text
//! events repeat (the API, key id, method, path, reason, label) is sent once
//! in the batch's `strings`, and each event names it by reference
//! (docs/sync-protocol.md, "Usage events").

use hashbrown::HashMap;
use ipgate_shared::{
    ClientIpSource, Door,
    proto::sync::v1::{self as wire, UsageEvent as WireEvent},
    time,
};

use super::Event;

/// The batch's string table and its events, each text field a reference
/// into the table.
pub(crate) fn encode(events: &[Event]) -> (Vec<String>, Vec<WireEvent>) {
    let mut table = Table::default();
    let wire = events
        .iter()
        .map(|e| {
            let key_ref = e.key_id.map_or(0, |id| table.refer(id.as_str()));
            WireEvent {
                request_id: e.request_id.to_string(),
                time: Some(time::to_timestamp(e.time)),
                status_code: u32::from(e.status),
                client_ip: e.client_ip.to_string(),
                door: Door::to_wire(Some(e.door)).into(),
                client_ip_source: ClientIpSource::to_wire(Some(e.client_ip_source)).into(),
                api_ref: table.refer(&e.api),
                api_key_id_ref: key_ref,
                method_ref: table.refer(&e.method),
                path_ref: table.refer(&e.path),
                reason_ref: table.refer(e.reason.as_str()),
                matched_label_ref: table.refer(&e.matched_label),
                ..wire::UsageEvent::default()
            }
        })
        .collect();
    (table.strings, wire)
}

/// Each distinct text once, numbered from 1.
#[derive(Default)]
struct Table {
    strings: Vec<String>,
    refs: HashMap<String, u32>,
}

impl Table {
    fn refer(&mut self, text: &str) -> u32 {
        if let Some(r) = self.refs.get(text) {
            return *r;
        }
        self.strings.push(text.to_owned());
        // A batch holds at most a few thousand events of six texts each.
        let r = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.refs.insert(text.to_owned(), r);
        r
    }
}
