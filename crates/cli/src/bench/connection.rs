//! One keep-alive HTTP/1.1 connection, driven by the task that sends on it.
//!
//! hyper's client connections come in two halves: a `SendRequest` handle and a `Connection`
//! future that does the IO. The usual way is to spawn the future as a task of its own; here the
//! sending task polls it itself while it waits (`drive`), so one request costs one task's wake-ups
//! rather than two tasks handing each other the work. The connection is polled before the
//! request's future so that the bytes it has just read reach the response in the same poll.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::tally::Transport;

type Io = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

pub(super) struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// `None` once the connection has ended: dropping it fails whatever still waits on it.
    io: Option<Pin<Box<Io>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("open", &self.io.is_some())
            .finish()
    }
}

/// What came back for one request.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// The body, kept only when asked for; otherwise it is read and dropped.
    pub(super) body: Option<Bytes>,
}

impl Connection {
    pub(super) async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        // Each request is written whole, but no delay waiting for an ACK, whatever hyper does.
        stream.set_nodelay(true)?;
        let (sender, io) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        Ok(Connection {
            sender,
            io: Some(Box::pin(io)),
        })
    }

    /// Whether a request can still be sent here (the server may have closed it while idle).
    pub(super) async fn is_usable(&mut self) -> bool {
        let Connection { sender, io } = self;
        io.is_some() && drive(io, sender.ready()).await.is_ok()
    }

    /// Sends `request` and reads the whole response. After an error the connection is unusable.
    pub(super) async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
        keep_body: bool,
    ) -> Result<Answer, Transport> {
        let Connection { sender, io } = self;
        let response = drive(io, sender.send_request(request))
            .await
            .map_err(|e| Transport::of(&e))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut kept = keep_body.then(Vec::new);
        while let Some(frame) = drive(io, body.frame()).await {
            let frame = frame.map_err(|e| Transport::of(&e))?;
            if let (Some(kept), Some(data)) = (kept.as_mut(), frame.data_ref()) {
                kept.extend_from_slice(data);
            }
        }
        Ok(Answer {
            status,
            body: kept.map(Bytes::from),
        })
    }
}

/// Runs `work` to completion while also polling the connection's IO, in this task.
async fn drive<F: Future>(io: &mut Option<Pin<Box<Io>>>, work: F) -> F::Output {
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Some(conn) = io.as_mut()
            && conn.as_mut().poll(cx).is_ready()
        {
            // Ended, cleanly or not. Dropping it resolves `work` with an error if it was
            // waiting on this connection, rather than leaving it pending forever.
            *io = None;
        }
        work.as_mut().poll(cx)
    })
    .await
}
