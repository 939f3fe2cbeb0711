//! orgplane-auth's integration tests: the JWT table, the dev key, the dev PKI and mTLS on
//! loopback.

mod dev_key;
mod jwt;
mod pki;
