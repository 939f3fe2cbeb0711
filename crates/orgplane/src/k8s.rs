//! Running under a Kubernetes StatefulSet: a pod's name, and so its host name, is
//! `<statefulset>-<ordinal>` with ordinals from 0, while Raft node ids start at 1. Kubernetes
//! cannot do arithmetic in a manifest and the image has no shell, so `orgplane node
//! --node-id-from-hostname` derives the id here: ordinal + 1.

/// A host name that does not end in a StatefulSet ordinal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("cannot read the host name: {0}")]
    Unreadable(String),
    #[error("host name {hostname:?} does not end in -<ordinal> (a StatefulSet pod name such as orgplane-eu-0)")]
    NoOrdinal { hostname: String },
}

/// The node id of the StatefulSet pod named `hostname`: its trailing `-<ordinal>` plus one.
/// Only the first label counts, so a fully qualified name works too.
pub fn node_id_from_hostname(hostname: &str) -> Result<u64, HostnameError> {
    let no_ordinal = || HostnameError::NoOrdinal { hostname: hostname.to_string() };
    let short = hostname.trim().split('.').next().unwrap_or_default();
    let (prefix, ordinal) = short.rsplit_once('-').ok_or_else(no_ordinal)?;
    if prefix.is_empty() || ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return Err(no_ordinal());
    }
    let ordinal: u64 = ordinal.parse().map_err(|_| no_ordinal())?;
    ordinal.checked_add(1).ok_or_else(no_ordinal)
}

/// This machine's (or pod's) host name: the kernel's, else `$HOSTNAME`.
pub fn hostname() -> Result<String, HostnameError> {
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
        read => std::env::var("HOSTNAME").map_err(|_| match read {
            Ok(_) => HostnameError::Unreadable("the kernel's host name is empty and HOSTNAME is not set".into()),
            Err(e) => HostnameError::Unreadable(format!("/proc/sys/kernel/hostname: {e}; HOSTNAME is not set")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(hostname: &str, expected: Option<u64>) {
        let got = node_id_from_hostname(hostname);
        match expected {
            Some(id) => assert_eq!(got, Ok(id), "hostname {hostname:?}"),
            None => assert_eq!(got, Err(HostnameError::NoOrdinal { hostname: hostname.to_string() })),
        }
    }

    #[test]
    fn node_id_is_the_trailing_ordinal_plus_one() {
        check("orgplane-eu-0", Some(1));
        check("orgplane-eu-2", Some(3));
        check("orgplane-apac-10", Some(11));
        check("orgplane-us-1.orgplane-us.orgplane.svc.cluster.local", Some(2));
        check("orgplane-us-1\n", Some(2));
        check("eu-007", Some(8));
        check("orgplane", None);
        check("orgplane-eu", None);
        check("orgplane-eu-", None);
        check("-0", None);
        check("orgplane-eu-1a", None);
        check("orgplane-eu-+1", None);
        check("orgplane-eu-18446744073709551615", None);
        check("", None);
    }
}
