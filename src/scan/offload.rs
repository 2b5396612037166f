//! CPU-heavy work on a message — SHA-256, MIME parsing, regex rules, the built-in EICAR check —
//! runs on tokio's blocking threads when the message is large, so the async worker threads keep
//! relaying other sessions' bytes meanwhile (issue 10). Small messages are handled inline: a
//! thread hop costs more than the work.

use std::sync::Arc;

use bytes::Bytes;

/// Messages at least this large are processed on a blocking thread.
pub const OFFLOAD_THRESHOLD: usize = 64 * 1024;

/// `work(message)`, on a blocking thread when the message is large. A blocking task that could
/// not run to completion (the runtime is shutting down) is retried inline.
pub async fn run<T, F>(message: &Bytes, work: F) -> T
where
    T: Send + 'static,
    F: Fn(&[u8]) -> T + Send + Sync + 'static,
{
    if message.len() < OFFLOAD_THRESHOLD {
        return work(message);
    }
    let work = Arc::new(work);
    let (bytes, task) = (message.clone(), work.clone());
    match tokio::task::spawn_blocking(move || task(&bytes)).await {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(%error, side = "internal", "blocking scan task failed; running inline");
            work(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn large_messages_leave_the_async_thread_and_small_ones_stay() {
        let here = std::thread::current().id();
        let small = Bytes::from(vec![0u8; 10]);
        let large = Bytes::from(vec![0u8; OFFLOAD_THRESHOLD]);
        let where_and_len = |bytes: &[u8]| (std::thread::current().id(), bytes.len());
        assert_eq!(run(&small, where_and_len).await, (here, 10));
        let (thread, len) = run(&large, where_and_len).await;
        assert_eq!(len, OFFLOAD_THRESHOLD);
        assert_ne!(thread, here);
    }
}
