//! A TCP relay to a real server that a test can cut and restore, to take a shared server
//! "down" for one host without touching the server itself; it can also count a PostgreSQL
//! server's round trips.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::free_port;

/// Listens on `port` of 127.0.0.1 while open and relays each connection to `upstream`.
pub struct Relay {
    pub port: u16,
    upstream: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// PostgreSQL's ReadyForQuery messages relayed, when counted.
    ready_for_query: Option<Arc<AtomicUsize>>,
}

impl Relay {
    pub fn new(upstream: u16) -> Self {
        Relay {
            port: free_port(),
            upstream,
            tasks: Arc::default(),
            ready_for_query: None,
        }
    }

    /// A relay to a PostgreSQL server that counts its round trips: the server ends its answer
    /// to each statement, and to each bare sync (sqlx's ping), with one ReadyForQuery message.
    pub fn counting_postgres_round_trips(upstream: u16) -> Self {
        Relay {
            ready_for_query: Some(Arc::default()),
            ..Relay::new(upstream)
        }
    }

    /// The round trips relayed so far (0 unless counted).
    pub fn round_trips(&self) -> usize {
        self.ready_for_query
            .as_ref()
            .map_or(0, |n| n.load(Ordering::SeqCst))
    }

    pub async fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let counter = self.ready_for_query.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let counter = counter.clone();
                let relay = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    match counter {
                        None => {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                        Some(counter) => {
                            let (mut from_client, to_client) = client.into_split();
                            let (from_server, mut to_server) = server.into_split();
                            let answers = tokio::spawn(count_ready_for_query(
                                from_server,
                                to_client,
                                counter,
                            ));
                            let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                            answers.abort();
                        }
                    }
                });
                tasks.lock().unwrap().push(relay);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Stops listening (new connections are refused) and drops every relayed connection, as a
    /// crashed server would.
    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Copies a PostgreSQL server's messages to its client, counting the ReadyForQuery ones. Every
/// message the server sends is framed: a type byte, then its length (itself included) in 4 bytes.
async fn count_ready_for_query(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Arc<AtomicUsize>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut header: Vec<u8> = Vec::with_capacity(5);
    let mut body_left = 0usize;
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 || to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
        let mut i = 0;
        while i < n {
            if body_left > 0 {
                let skipped = body_left.min(n - i);
                body_left -= skipped;
                i += skipped;
                continue;
            }
            header.push(buffer[i]);
            i += 1;
            if header.len() == 5 {
                if header[0] == b'Z' {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                body_left = (length as usize).saturating_sub(4);
                header.clear();
            }
        }
    }
}
