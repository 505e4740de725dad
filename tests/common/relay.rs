//! A TCP relay to a real server that a test can cut and restore, to take a shared server
//! "down" for one host without touching the server itself.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::free_port;

/// Listens on `port` of 127.0.0.1 while open and relays each connection to `upstream`.
pub struct Relay {
    pub port: u16,
    upstream: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    pub fn new(upstream: u16) -> Self {
        Relay {
            port: free_port(),
            upstream,
            tasks: Arc::default(),
        }
    }

    pub async fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
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
