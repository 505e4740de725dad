//! A TCP relay to a real server that a test can cut and restore, to take a shared server
//! "down" for one host without touching the server itself; it can also count the round trips
//! of a PostgreSQL or MySQL server's clients.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::free_port;

/// Listens on `port` of 127.0.0.1 while open and relays each connection to `upstream`.
pub struct Relay {
    pub port: u16,
    upstream: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// The round trips relayed, when counted, and how to tell them.
    counted: Option<(Protocol, Arc<AtomicUsize>)>,
}

/// The wire protocol whose round trips a relay counts.
#[derive(Clone, Copy)]
enum Protocol {
    /// The server ends its answer to each statement, and to each bare sync (sqlx's ping), with
    /// one ReadyForQuery message.
    Postgres,
    /// The client starts each command (a query, a prepared statement's execution, a ping) with
    /// a packet of sequence number 0.
    MySql,
}

impl Relay {
    pub fn new(upstream: u16) -> Self {
        Relay {
            port: free_port(),
            upstream,
            tasks: Arc::default(),
            counted: None,
        }
    }

    /// A relay to a PostgreSQL server that counts its round trips.
    pub fn counting_postgres_round_trips(upstream: u16) -> Self {
        Relay {
            counted: Some((Protocol::Postgres, Arc::default())),
            ..Relay::new(upstream)
        }
    }

    /// A relay to a MySQL server that counts its round trips (the connection must not use
    /// TLS, as dtm-host's does not).
    pub fn counting_mysql_round_trips(upstream: u16) -> Self {
        Relay {
            counted: Some((Protocol::MySql, Arc::default())),
            ..Relay::new(upstream)
        }
    }

    /// The round trips relayed so far (0 unless counted).
    pub fn round_trips(&self) -> usize {
        self.counted
            .as_ref()
            .map_or(0, |(_, n)| n.load(Ordering::SeqCst))
    }

    pub async fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let counter = self.counted.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let counter = counter.clone();
                let relay = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let Some((protocol, counter)) = counter else {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    };
                    let (from_client, to_client) = client.into_split();
                    let (from_server, to_server) = server.into_split();
                    let (counted, copied) = match protocol {
                        Protocol::Postgres => ((from_server, to_client), (from_client, to_server)),
                        Protocol::MySql => ((from_client, to_server), (from_server, to_client)),
                    };
                    let counting = tokio::spawn(copy_counting(protocol, counted, counter));
                    let (mut from, mut to) = copied;
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                    counting.abort();
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

/// Copies one direction of a connection, counting the round trips `protocol` marks on it: a
/// PostgreSQL server's messages (a type byte, then their length, itself included, in 4 bytes),
/// or a MySQL client's packets (their length in 3 bytes, little-endian, then a sequence number).
async fn copy_counting(
    protocol: Protocol,
    (mut from, mut to): (OwnedReadHalf, OwnedWriteHalf),
    counter: Arc<AtomicUsize>,
) {
    let header_len = match protocol {
        Protocol::Postgres => 5,
        Protocol::MySql => 4,
    };
    let mut buffer = vec![0u8; 64 * 1024];
    let mut header: Vec<u8> = Vec::with_capacity(header_len);
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
            if header.len() == header_len {
                let (round_trip, body) = match protocol {
                    Protocol::Postgres => {
                        let length =
                            u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
                        (header[0] == b'Z', (length as usize).saturating_sub(4))
                    }
                    Protocol::MySql => {
                        let length = u32::from_le_bytes([header[0], header[1], header[2], 0]);
                        (header[3] == 0, length as usize)
                    }
                };
                if round_trip {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                body_left = body;
                header.clear();
            }
        }
    }
}
