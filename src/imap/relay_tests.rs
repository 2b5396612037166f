//! Byte-script tests of the logged-in IMAP core ([`super::Relay`]).
