//! Backup headers: the domain [`BackupHeader`] (what the file keeps) and the wire
//! `BackupHeader` (what a node streams first).

use orgplane_backup::{BackupHeader, BackupMember, FORMAT_VERSION};

use super::{parse_region, ConvError};
use crate::v1;

/// The wire header of a backup in this build's format version.
pub fn backup_header_to_wire(header: &BackupHeader) -> v1::BackupHeader {
    let members = header
        .membership
        .iter()
        .map(|m| v1::ClusterMember {
            node_id: m.node_id,
            address: m.address.clone(),
            kind: if m.voter { "voter" } else { "learner" }.to_string(),
        })
        .collect();
    v1::BackupHeader {
        format_version: FORMAT_VERSION,
        region: header.region.to_string(),
        log_index: header.log_index,
        log_term: header.log_term,
        membership: Some(v1::Membership { region: header.region.to_string(), members, log_index: header.log_index }),
        created_at_ms: header.created_at_ms,
        data_bytes: header.data_bytes,
        data_format: header.data_format.clone(),
        node_id: header.node_id,
    }
}

/// Parses the header a backup stream starts with; a format version other than this build's
/// is refused, so no data of an unknown framing is ever written to a file.
pub fn parse_backup_header(wire: v1::BackupHeader) -> Result<BackupHeader, ConvError> {
    if wire.format_version != FORMAT_VERSION {
        return Err(ConvError::new(
            "format_version",
            format!(
                "backup format version {}, but this build reads only version {FORMAT_VERSION}",
                wire.format_version
            ),
        ));
    }
    let region = parse_region("region", &wire.region)?;
    let membership = wire
        .membership
        .unwrap_or_default()
        .members
        .into_iter()
        .map(|m| match m.kind.as_str() {
            "voter" | "learner" => {
                Ok(BackupMember { node_id: m.node_id, address: m.address, voter: m.kind == "voter" })
            }
            other => Err(ConvError::new("membership", format!("unknown member kind {other:?}"))),
        })
        .collect::<Result<_, _>>()?;
    if wire.data_format.is_empty() {
        return Err(ConvError::new("data_format", "is required"));
    }
    Ok(BackupHeader {
        region,
        log_index: wire.log_index,
        log_term: wire.log_term,
        membership,
        created_at_ms: wire.created_at_ms,
        data_bytes: wire.data_bytes,
        data_format: wire.data_format,
        node_id: wire.node_id,
    })
}

#[cfg(test)]
mod tests {
    use orgplane_model::Region;

    use super::*;

    fn header() -> BackupHeader {
        BackupHeader {
            region: Region::Apac,
            log_index: 9,
            log_term: 2,
            membership: vec![
                BackupMember { node_id: 1, address: "a:1".into(), voter: true },
                BackupMember { node_id: 4, address: "d:1".into(), voter: false },
            ],
            created_at_ms: 5,
            data_bytes: 77,
            data_format: "store/1 snapshot/1".into(),
            node_id: 1,
        }
    }

    fn check_refused(wire: v1::BackupHeader, expected: &str) {
        let error = parse_backup_header(wire).expect_err("must be refused").to_string();
        assert!(error.contains(expected), "{error}");
    }

    #[test]
    fn round_trips_and_refuses_what_it_cannot_read() {
        let wire = backup_header_to_wire(&header());
        assert_eq!(wire.format_version, FORMAT_VERSION);
        assert_eq!(parse_backup_header(wire.clone()).unwrap(), header());

        check_refused(v1::BackupHeader { format_version: 2, ..wire.clone() }, "format version 2");
        check_refused(v1::BackupHeader { region: "mars".into(), ..wire.clone() }, "invalid region");
        check_refused(v1::BackupHeader { data_format: String::new(), ..wire.clone() }, "data_format");
        let mut odd_member = wire;
        odd_member.membership.as_mut().unwrap().members[0].kind = "witness".into();
        check_refused(odd_member, "unknown member kind");
    }
}
