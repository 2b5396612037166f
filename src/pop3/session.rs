//! POP3 session (being written): until then POP3 listeners refuse clients cleanly.

use tokio::io::AsyncWriteExt;

use crate::net::Stream;
use crate::server::SessionContext;

/// Runs a POP3 session.
pub async fn run(_context: SessionContext, mut client: Stream) {
    let _ = client
        .write_all(b"-ERR [SYS/PERM] POP3 is not available yet\r\n")
        .await;
}
